package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// rebuildPoll is how often eddy rebuild samples its progress and, once
// caught up, tries the switch.
const rebuildPoll = 250 * time.Millisecond

func rebuildCommand(g *globals) *cobra.Command {
	var file, name, progress string
	var partial bool
	cmd := &cobra.Command{
		Use:   "rebuild -c FILE --pipeline NAME",
		Short: "Rebuild a pipeline's read model from its input's whole history into a new version, then switch readers to it in one step",
		Long: `Rebuild replays the pipeline's input from its first entry into a new
consumer group (<group>:v<N>) that writes version N of the read model
(its state steps' hashes, prefixed v<N>:), while the current version keeps
serving and its workers keep running. Once version N has caught up with
the current one on every partition (nothing pending, read at least as
far), it sets eddy:version:<pipeline> to N in one atomic step: readers
that read that key follow at once, and the pipeline's eddy run workers
move to version N within a second. A rebuild that is stopped resumes
where it was when run again.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usageError{errors.New("--pipeline is required")}
			}
			switch progress {
			case "auto", "bar", "lines", "off":
			default:
				return usageError{fmt.Errorf("--progress: want auto, bar, lines or off, got %q", progress)}
			}
			f, ps, log, err := setup(g, file, []string{name})
			if err != nil {
				return err
			}
			p := ps[0]
			if err := p.Rebuildable(); err != nil {
				return usageError{err}
			}
			conn, err := connect(cmd.Context(), g, f, log, "rebuild")
			if err != nil {
				return err
			}
			defer conn.close()
			r := &rebuild{p: p, rdb: conn.client, log: log, out: cmd.OutOrStdout(), mode: progress, partial: partial}
			return r.run(cmd.Context(), func(pv *pipelines.Pipeline) error {
				return checkAccess(cmd.Context(), conn, []*pipelines.Pipeline{pv}, processor.RoleRebuild)
			})
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "pipeline file (YAML)")
	cmd.Flags().StringVar(&name, "pipeline", "", "the pipeline whose read model to rebuild")
	cmd.Flags().BoolVar(&partial, "allow-partial-history", false, "rebuild even though the input has lost entries (retention, MAXLEN, XDEL): the new version lacks them")
	cmd.Flags().StringVar(&progress, "progress", "auto", "auto (a bar on a terminal, else a line every 2s), bar, lines or off")
	return cmd
}

// rebuild is one run of eddy rebuild.
type rebuild struct {
	p    *pipelines.Pipeline
	rdb  redis.UniversalClient
	log  *zap.Logger
	out  io.Writer
	mode string
	// partial lets a rebuild start from an input that lost entries.
	partial bool
}

// run builds the next version (or resumes the one a stopped rebuild was
// building), switches to it, and stops its own worker.
func (r *rebuild) run(ctx context.Context, check func(*pipelines.Pipeline) error) error {
	from, err := processor.ReadVersion(ctx, r.rdb, r.p.Name)
	if err != nil {
		return err
	}
	to := from + 1
	if v, err := r.rdb.Get(ctx, processor.RebuildKey(r.p.Name)).Int(); err == nil && v > from {
		to = v
		fmt.Fprintf(r.out, "resuming the rebuild of %s version %d\n", r.p.Name, to)
	} else if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read %s: %w", processor.RebuildKey(r.p.Name), err)
	}
	pv := r.p.AtVersion(to)
	if err := check(pv); err != nil {
		return err
	}
	if err := r.wholeHistory(ctx); err != nil {
		return err
	}
	if err := r.rdb.Set(ctx, processor.RebuildKey(r.p.Name), to, 0).Err(); err != nil {
		return fmt.Errorf("record the rebuild in %s: %w", processor.RebuildKey(r.p.Name), err)
	}
	po := pv.Options()
	po.Consumer = "rebuild-" + processor.DefaultConsumer()
	po.Logger = r.log
	proc, err := processor.New(r.rdb, po)
	if err != nil {
		return err
	}
	in, err := processor.NewInspector(r.rdb, po)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.out, "rebuilding %s: version %d (group %s, hashes %s) from the first entry of %s; version %d serves meanwhile\n",
		r.p.Name, to, po.Group, strings.Join(prefixed(processor.VersionPrefix(to), r.p.ReadModels()), ", "), po.Stream, from)

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	done := make(chan error, 1)
	go func() { done <- proc.Run(workCtx) }()
	stop := func() error {
		stopWork()
		return <-done
	}

	bar := newProgressBar(r.out, r.mode)
	start := time.Now()
	tick := time.NewTicker(rebuildPoll)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			bar.finish()
			if err == nil {
				err = errors.New("the rebuild's worker stopped")
			}
			return fmt.Errorf("rebuild %s version %d: %w", r.p.Name, to, err)
		case <-ctx.Done():
			bar.finish()
			if err := stop(); err != nil {
				return err
			}
			fmt.Fprintf(r.out, "stopped: version %d is not switched to; run eddy rebuild again to resume it\n", to)
			return exitError{code: 130}
		case <-tick.C:
		}
		stats, err := in.Stats(ctx)
		if err != nil {
			r.log.Warn("rebuild_progress_failed", zap.Error(err))
			continue
		}
		pr := progressOf(stats)
		bar.show(pr, time.Since(start))
		if !pr.caughtUp() {
			continue
		}
		err = processor.SwitchVersion(ctx, r.rdb, r.p.Options(), from, to)
		if errors.Is(err, processor.ErrVersionBehind) {
			continue // the current version moved on meanwhile: catch up again
		}
		if err != nil {
			bar.finish()
			_ = stop()
			return err
		}
		bar.show(pr, time.Since(start))
		bar.finish()
		if err := r.rdb.Del(context.WithoutCancel(ctx), processor.RebuildKey(r.p.Name)).Err(); err != nil {
			r.log.Warn("rebuild_record_not_deleted", zap.String("key", processor.RebuildKey(r.p.Name)), zap.Error(err))
		}
		r.log.Info("read_model_switched", zap.String("pipeline", r.p.Name), zap.Int("from", from), zap.Int("to", to), zap.Int64("entries", pr.done))
		fmt.Fprintf(r.out, "switched %s to version %d in %s: %s entries replayed; readers of %s now read version %d\n",
			r.p.Name, to, time.Since(start).Round(time.Millisecond), commas(pr.done), processor.VersionKey(r.p.Name), to)
		r.handOver(ctx, from)
		r.retire(context.WithoutCancel(ctx), from)
		fmt.Fprintf(r.out, "version %d's hashes (%s) are no longer written; delete them when no reader uses them\n",
			from, strings.Join(prefixed(processor.VersionPrefix(from), r.p.ReadModels()), ", "))
		return stop()
	}
}

// handOver keeps the new version's worker running after the switch until
// the pipeline's eddy run workers have left the old version (they read the
// version every followEvery, then drain), so that the version readers now
// read keeps up meanwhile instead of standing still while the old one
// moves on. It waits at most two reads of the version and a drain.
func (r *rebuild) handOver(ctx context.Context, from int) {
	old := r.p.AtVersion(from).Options()
	in, err := processor.NewInspector(r.rdb, old)
	if err != nil {
		return
	}
	deadline := time.Now().Add(2*followEvery + cmp.Or(old.ShutdownTimeout, processor.DefaultShutdownTimeout))
	for time.Now().Before(deadline) && ctx.Err() == nil {
		members, err := in.Members(ctx)
		if err == nil && len(members) == 0 {
			return
		}
		time.Sleep(rebuildPoll)
	}
}

// wholeHistory refuses a rebuild from an input that has lost entries
// (retention, MAXLEN, XDEL): the new version would lack them, and readers
// would be switched to a read model that steps back. --allow-partial-history
// lets it through.
func (r *rebuild) wholeHistory(ctx context.Context) error {
	if r.partial {
		return nil
	}
	o := r.p.Options()
	n := max(o.Partitions, 1)
	for p := range n {
		s := processor.PartitionStream(o.Stream, p, n)
		info, err := r.rdb.XInfoStream(ctx, s).Result()
		if err != nil {
			if processor.NoSuchKey(err) {
				continue
			}
			return fmt.Errorf("read the history of %s: %w", s, err)
		}
		if info.EntriesAdded > info.Length {
			return usageError{fmt.Errorf("%s has lost %d of the %d entries ever added to it (retention, MAXLEN or XDEL): version %d would be built without them, and its readers would see the read model step back; give --allow-partial-history to rebuild from what is left",
				s, info.EntriesAdded-info.Length, info.EntriesAdded, r.p.Version()+1)}
		}
	}
	return nil
}

// retire destroys the old version's consumer group on every partition once
// its workers have left it: a group nobody reads would hold the input's
// retention back for good. A worker still in it keeps it.
func (r *rebuild) retire(ctx context.Context, from int) {
	old := r.p.AtVersion(from).Options()
	in, err := processor.NewInspector(r.rdb, old)
	if err != nil {
		return
	}
	if members, err := in.Members(ctx); err != nil || len(members) > 0 {
		fmt.Fprintf(r.out, "version %d's group %s still has workers; destroy it (XGROUP DESTROY) on each partition once they have gone\n", from, old.Group)
		return
	}
	n := max(old.Partitions, 1)
	for p := range n {
		s := processor.PartitionStream(old.Stream, p, n)
		if err := r.rdb.XGroupDestroy(ctx, s, old.Group).Err(); err != nil && !processor.NoSuchKey(err) {
			r.log.Warn("rebuild_group_not_destroyed", zap.String("stream", s), zap.String("group", old.Group), zap.Error(err))
		}
	}
	fmt.Fprintf(r.out, "destroyed version %d's consumer group %s, which nobody reads any more\n", from, old.Group)
}

func prefixed(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

// rebuildProgress is how far the new version's group is, over every
// partition.
type rebuildProgress struct {
	done, total int64 // entries acknowledged; entries in the streams
	unknown     int   // partitions whose lag Redis cannot tell
	behind      bool  // some partition has entries not yet read
}

func progressOf(stats []processor.PartitionStats) rebuildProgress {
	var pr rebuildProgress
	for _, s := range stats {
		pr.total += s.Length
		switch {
		case s.Length > 0 && !s.GroupExists:
			pr.behind = true
		case s.Lag < 0:
			pr.unknown++
			pr.behind = true
		default:
			pr.done += max(s.Length-s.Lag-s.Pending, 0)
			pr.behind = pr.behind || s.Lag > 0
		}
	}
	return pr
}

// caughtUp reports whether the new version has read every partition to its
// end, when the switch is worth trying (the switch script checks what
// counts: that it has acknowledged all the old version has read).
func (pr rebuildProgress) caughtUp() bool { return !pr.behind }

// progressBar shows a rebuild's progress: a bar redrawn in place on a
// terminal, else a line every 2 seconds.
type progressBar struct {
	w        io.Writer
	inPlace  bool
	off      bool
	last     time.Time
	drawn    bool
	lastDone int64
	lastAt   time.Duration
	rate     float64
}

func newProgressBar(w io.Writer, mode string) *progressBar {
	b := &progressBar{w: w}
	switch mode {
	case "off":
		b.off = true
	case "bar":
		b.inPlace = true
	case "auto":
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				b.inPlace = true
			}
		}
	}
	return b
}

func (b *progressBar) show(pr rebuildProgress, elapsed time.Duration) {
	if b.off {
		return
	}
	if dt := (elapsed - b.lastAt).Seconds(); dt >= 1 {
		b.rate = float64(pr.done-b.lastDone) / dt
		b.lastDone, b.lastAt = pr.done, elapsed
	}
	if !b.inPlace && time.Since(b.last) < 2*time.Second && b.drawn {
		return
	}
	b.last = time.Now()
	const width = 30
	frac := 1.0
	if pr.total > 0 {
		frac = min(float64(pr.done)/float64(pr.total), 1)
	}
	n := int(frac * width)
	line := fmt.Sprintf("[%s%s] %5.1f%% %s/%s entries, %s/s, %s",
		strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac, commas(pr.done), commas(pr.total),
		commas(int64(b.rate)), elapsed.Round(time.Second))
	if pr.unknown > 0 {
		line += fmt.Sprintf(" (%d partitions of unknown lag)", pr.unknown)
	}
	if b.inPlace {
		fmt.Fprintf(b.w, "\r%s", line)
	} else {
		fmt.Fprintln(b.w, line)
	}
	b.drawn = true
}

func (b *progressBar) finish() {
	if b.inPlace && b.drawn {
		fmt.Fprintln(b.w)
	}
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}
