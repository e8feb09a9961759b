package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// Redis permissions. Every command that opens Redis checks, before it
// starts work, that its Redis user may send what it will send
// (processor.CheckAccess), each in its role: eddy run a worker, eddy
// produce a producer, eddy status and eddy dlq list a monitor, eddy dlq
// replay an operator. A user that lacks something fails the command at
// once, naming it, instead of a worker that sits idle and says it is
// ready. The embedded Redis has no users and is not checked.
//
// While eddy run runs, a pipeline that meets an error it cannot get past
// (a permission taken away) turns /readyz unready at once (failGate) and
// fails the run; a supervisor that restarts it meets the check.

// checkAccess checks the user of conn for role on each pipeline of ps.
func checkAccess(ctx context.Context, conn *redisConn, ps []*pipelines.Pipeline, role processor.Role) error {
	if conn.embedded {
		return nil
	}
	var errs []error
	for _, p := range ps {
		if role == processor.RoleWorker || role == processor.RoleMonitor || role == processor.RoleOperator {
			// The version readers read now, whose group and hashes are the
			// ones used. A user who may not read the version is checked at
			// version 1, whose rules name the version key.
			if pv, _, err := atCurrentVersion(ctx, conn.client, p); err == nil {
				p = pv
			}
		}
		if err := processor.CheckAccess(ctx, conn.client, p.Options(), role, writtenBy(p)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// connectAs is connect for a command that acts in role on the pipelines
// ps: it fails, naming what is missing, when the user may not.
func connectAs(ctx context.Context, g *globals, f *pipelines.File, ps []*pipelines.Pipeline, log *zap.Logger, command string, role processor.Role) (*redisConn, error) {
	conn, err := connect(ctx, g, f, log, command)
	if err != nil {
		return nil, err
	}
	if err := checkAccess(ctx, conn, ps, role); err != nil {
		conn.close()
		return nil, err
	}
	return conn, nil
}

// openReplay is openDLQ for dlq replay, whose user is an operator.
func openReplay(ctx context.Context, g *globals, file, pipeline string) (*dlqTarget, error) {
	t, err := openDLQ(ctx, g, file, pipeline)
	if err != nil {
		return nil, err
	}
	if err := processor.CheckAccess(ctx, t.conn.client, t.in.Options(), processor.RoleOperator); err != nil {
		t.conn.close()
		return nil, err
	}
	return t, nil
}

// waitAndCheck is wait for eddy run and then, once Redis answers, the
// check of its user as a worker of each pipeline of ps (and as a producer
// of those the file's simulators feed).
func (r *redisConn) waitAndCheck(ctx context.Context, w redisWait, f *pipelines.File, ps []*pipelines.Pipeline) error {
	if err := r.wait(ctx, w); err != nil {
		return err
	}
	if err := checkAccess(ctx, r, ps, processor.RoleWorker); err != nil {
		return err
	}
	var fed []*pipelines.Pipeline
	for _, s := range f.Simulate {
		if p := pipelineNamed(ps, s.Pipeline); p != nil {
			fed = append(fed, p)
		}
	}
	return checkAccess(ctx, r, fed, processor.RoleProducer)
}

// accessProbeKey stands for the message key in the name of a read model
// hash that the check probes.
const accessProbeKey = "eddy-access-check"

// writtenBy lists the keys outside the engine's own that p's built-in
// steps write: output streams (output.stream) and read model hashes
// (state.hash, "$key" standing for any key). Steps registered from Go may
// write others, which the check cannot know.
func writtenBy(p *pipelines.Pipeline) []processor.Written {
	var out []processor.Written
	for _, st := range p.Steps {
		var c map[string]any
		if st.Decode(&c) != nil {
			continue // it was checked when the file was loaded
		}
		switch st.Type {
		case "output":
			if s, ok := c["stream"].(string); ok && s != "" {
				out = append(out, processor.Written{Key: s, Kinds: []processor.EffectKind{processor.EffectXAdd}})
			}
		case "state":
			h, ok := c["hash"].(string)
			if !ok || h == "" {
				continue // the key's own state: the engine's keys
			}
			out = append(out, readModel(processor.VersionPrefix(p.Version())+h, processor.EffectHSet, processor.EffectHIncrBy, processor.EffectHIncrByFloat))
		default:
			// The analytics steps (and saga): results to output.stream, an
			// optional read model output.hash, late events to a stream.
			o, ok := c["output"].(map[string]any)
			if !ok {
				continue
			}
			if s, ok := o["stream"].(string); ok && s != "" {
				out = append(out, processor.Written{Key: s, Kinds: []processor.EffectKind{processor.EffectXAdd}})
			}
			if h, ok := o["hash"].(string); ok && h != "" {
				out = append(out, readModel(h, processor.EffectHSet))
			}
			if l, ok := c["late"].(string); ok && strings.HasPrefix(l, "stream:") {
				out = append(out, processor.Written{Key: strings.TrimSpace(strings.TrimPrefix(l, "stream:")), Kinds: []processor.EffectKind{processor.EffectXAdd}})
			}
		}
	}
	return out
}

// readModel is a read-model hash h ("$key" standing for any key) written
// with kinds.
func readModel(h string, kinds ...processor.EffectKind) processor.Written {
	parts := strings.Split(h, "$key")
	for i := range parts {
		parts[i] = processor.GlobEscape(parts[i])
	}
	return processor.Written{Key: strings.ReplaceAll(h, "$key", accessProbeKey), Pattern: strings.Join(parts, "*"), Kinds: kinds}
}

// failGate turns /readyz unready for good the moment a pipeline's Run
// starts failing (processor.FailureObserver), rather than when the Run
// returns after its drain. Until open it only remembers why.
type failGate struct {
	mu  sync.Mutex
	srv *httpServer
	why string
}

var (
	_ processor.Observer        = (*failGate)(nil)
	_ processor.FailureObserver = (*failGate)(nil)
	_ processor.FailureObserver = observers(nil)
)

func (g *failGate) Committed(processor.Commit)    {}
func (g *failGate) Retried(string, int, error)    {}
func (g *failGate) Handled(string, time.Duration) {}
func (g *failGate) Failing(pipeline string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.why == "" {
		g.why = fmt.Sprintf("pipeline %s is stopping: %v", pipeline, err)
	}
	if g.srv != nil {
		g.srv.waiting.Store(&g.why)
		g.srv.ready.Store(false)
	}
}

// open makes srv (nil: no HTTP listener) ready, unless a pipeline is
// failing already, and keeps it so until one does.
func (g *failGate) open(srv *httpServer) {
	if srv == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.srv = srv
	if g.why != "" {
		srv.waiting.Store(&g.why)
		return
	}
	srv.ready.Store(true)
}

// Failing tells each observer that wants to know.
func (os observers) Failing(pipeline string, err error) {
	for _, o := range os {
		if fo, ok := o.(processor.FailureObserver); ok {
			fo.Failing(pipeline, err)
		}
	}
}
