package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/console"
	"github.com/eddy-streams/eddy/internal/secret"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// consoleToken reads the console's admin token as the file's console
// section says: "" (read-only) when none is named.
func consoleToken(c pipelines.Console) (string, error) {
	if c.AdminTokenEnv != "" && c.AdminTokenFile != "" {
		return "", usageError{errors.New("console.admin_token_env and console.admin_token_file: give at most one")}
	}
	tok, err := secret.Read(c.AdminTokenEnv, c.AdminTokenFile)
	switch {
	case errors.Is(err, secret.ErrNone):
		return "", nil
	case err != nil && c.AdminTokenEnv != "":
		return "", fmt.Errorf("console.admin_token_env: %w", err)
	case err != nil:
		return "", fmt.Errorf("console.admin_token_file: %w", err)
	}
	if len(tok) < console.MinAdminTokenLen { // say where it is, never what it is
		where := "console.admin_token_env: environment variable " + c.AdminTokenEnv
		if c.AdminTokenEnv == "" {
			where = "console.admin_token_file: file " + c.AdminTokenFile
		}
		return "", fmt.Errorf("%s holds an admin token of %d bytes: want at least %d (e.g. openssl rand -hex 16)",
			where, len(tok), console.MinAdminTokenLen)
	}
	return tok, nil
}

// loopback reports whether the listen address addr accepts connections
// from this machine only: its host is a loopback IP or "localhost". An
// empty host (":9180") listens on every interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// errConsoleNotLoopback explains why the console is not served.
const errConsoleNotLoopback = "the console shows dead letters' payloads: on an address other than loopback it needs an admin token (console.admin_token_env or console.admin_token_file), and then every page needs a login"

// newConsole builds the web console of the pipelines ps of f, reading
// Redis through rdb (which it does not close) and the admin token the file
// names. Each pipeline's dead letters are deleted with XDEL on its
// dead-letter stream; a replay warns of the file's other pipelines that
// read the same input stream without dedupe, as eddy dlq replay does.
//
// On a listen address addr that is not loopback every page needs a login
// (console.Options.LoginToView); the caller refuses such an address
// without a token.
func newConsole(f *pipelines.File, ps []*pipelines.Pipeline, rdb redis.UniversalClient, addr string, log *zap.Logger) (*console.Server, error) {
	tok, err := consoleToken(f.Console)
	if err != nil {
		return nil, err
	}
	o := console.Options{AdminToken: tok, Logger: log, LoginToView: !loopback(addr)}
	for _, p := range ps {
		in, err := processor.NewInspector(rdb, p.Options())
		if err != nil {
			return nil, fmt.Errorf("pipeline %s: %w", p.Name, err)
		}
		dlq := in.Options().DeadLetterStream
		cp := console.Pipeline{Name: p.Name, Inspector: in,
			Delete: func(ctx context.Context, ids []string) (int64, error) {
				n, err := rdb.XDel(ctx, dlq, ids...).Result()
				if err != nil {
					return n, fmt.Errorf("delete dead letters from %s: %w", dlq, err)
				}
				return n, nil
			}}
		if p.Rebuildable() == nil {
			cp.Current = currentInspector(rdb, p, in)
		}
		for _, step := range p.AnalyticsSteps() {
			cp.Analytics = append(cp.Analytics, console.AnalyticsStep{Name: step, Gauge: pipelines.GaugeOpen(step)})
		}
		for _, other := range f.Pipelines {
			if other.Name != p.Name && other.Input.Stream == p.Input.Stream && other.Dedupe == nil {
				cp.SharedWith = append(cp.SharedWith, other.Name)
			}
		}
		o.Pipelines = append(o.Pipelines, cp)
	}
	return console.New(o)
}

// withConsole returns routes (the http.addr listener's extra routes, nil
// for none) with the web console of ps mounted at "/", unless the file's
// console.off is set, or http.addr is not a loopback address and no admin
// token is configured (then it logs console_off_not_loopback and "/" is
// 404). It is what eddy run calls to serve the console next to /metrics.
func withConsole(routes map[string]http.Handler, f *pipelines.File, ps []*pipelines.Pipeline, rdb redis.UniversalClient, log *zap.Logger) (map[string]http.Handler, error) {
	if f.Console.Off {
		return routes, nil
	}
	tok, err := consoleToken(f.Console)
	if err != nil {
		return nil, err
	}
	if tok == "" && !loopback(f.HTTP.Addr) {
		if log != nil {
			log.Warn("console_off_not_loopback", zap.String("addr", f.HTTP.Addr), zap.String("why", errConsoleNotLoopback))
		}
		return routes, nil
	}
	c, err := newConsole(f, ps, rdb, f.HTTP.Addr, log)
	if err != nil {
		return nil, err
	}
	out := make(map[string]http.Handler, len(routes)+1)
	maps.Copy(out, routes)
	maps.Copy(out, c.Routes())
	return out, nil
}

func consoleCommand(g *globals) *cobra.Command {
	var file, addr string
	var names []string
	cmd := &cobra.Command{
		Use:   "console -c FILE [--http ADDR]",
		Short: "Serve the web console: pipelines, partitions, workers, pending entries and dead letters (replay and delete with an admin token)",
		Long: `Serves the web console of the file's pipelines on http.addr (or --http) until
stopped, next to /metrics, /healthz and /readyz. It reads Redis as a monitor;
with an admin token (console.admin_token_env or console.admin_token_file) an
operator who logs in may replay and delete dead letters, and the Redis user
must then be an operator.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			f, ps, log, err := setup(g, file, names)
			if err != nil {
				return err
			}
			if f.Console.Off {
				return usageError{fmt.Errorf("console.off is true in %s", f.Name)}
			}
			if addr == "" {
				addr = f.HTTP.Addr
			}
			if addr == "" || addr == "off" {
				return usageError{errors.New("no address to serve on: http.addr is off; give --http ADDR")}
			}
			role := processor.RoleMonitor
			if tok, err := consoleToken(f.Console); err != nil {
				return err
			} else if tok != "" {
				role = processor.RoleOperator
			} else if !loopback(addr) {
				return usageError{fmt.Errorf("console on %s: %s", addr, errConsoleNotLoopback)}
			}
			conn, err := connectAs(ctx, g, f, ps, log, "console", role)
			if err != nil {
				return err
			}
			defer conn.close()
			c, err := newConsole(f, ps, conn.client, addr, log)
			if err != nil {
				return err
			}
			srv := &httpServer{addr: addr, reg: prometheus.NewRegistry(), rdb: conn.client, routes: c.Routes()}
			ln, err := srv.listen(ctx)
			if err != nil {
				return err
			}
			srv.ready.Store(true)
			log.Info("console_listening", zap.String("addr", ln.Addr().String()), zap.Bool("read_only", c.ReadOnly()),
				zap.Int("pipelines", len(ps)))
			return srv.Serve(ctx, ln)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&file, "config", "c", "", "config file (YAML)")
	fl.StringSliceVar(&names, "pipeline", nil, "only these pipelines (default all)")
	fl.StringVar(&addr, "http", "", "listen address, overriding http.addr")
	return cmd
}

// currentInspector returns the console's reader of p's read-model version
// readers read now: in for version 1, else one for that version's group.
func currentInspector(rdb redis.UniversalClient, p *pipelines.Pipeline, in *processor.Inspector) func(context.Context) (*processor.Inspector, int, error) {
	var mu sync.Mutex
	byVersion := map[int]*processor.Inspector{1: in}
	return func(ctx context.Context) (*processor.Inspector, int, error) {
		v, err := processor.ReadVersion(ctx, rdb, p.Name)
		if err != nil {
			return nil, 0, err
		}
		mu.Lock()
		defer mu.Unlock()
		if in, ok := byVersion[v]; ok {
			return in, v, nil
		}
		in, err := processor.NewInspector(rdb, p.AtVersion(v).Options())
		if err != nil {
			return nil, 0, err
		}
		byVersion[v] = in
		return in, v, nil
	}
}
