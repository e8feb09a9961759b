package pipelines

import (
	"errors"
	"fmt"
	"math"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/eddy-streams/eddy/internal/redisurl"
	"github.com/eddy-streams/eddy/processor"
)

// Limits checked by validation. Each bounds what one worker allocates or
// looks up for a valid config, so that no file that passes validation can
// exhaust memory when eddy run starts (docs/configuration.md, "Limits").
const (
	// MaxPartitions bounds input.partitions.
	MaxPartitions = 1024
	// MaxBatchSize bounds batch_size: entries per read and per commit.
	MaxBatchSize = 10000
	// MaxLanes bounds lanes: one goroutine each, whose queues hold only
	// entries in flight.
	MaxLanes = 4096
	// MaxInflight bounds max_inflight, per partition.
	MaxInflight = 1000000
	// MaxInflightEntries bounds input.partitions × max_inflight: the entries
	// one worker may hold read but not committed when it owns every
	// partition, each up to max_event_bytes. Each partition a worker owns
	// also allocates a results queue of max_inflight slots as it starts (8
	// bytes a slot: 8 MiB in all at the bound). As max_inflight is at least
	// batch_size, this bounds input.partitions × batch_size too.
	MaxInflightEntries = 1 << 20
	// MaxRetryAttempts bounds retry.max_attempts.
	MaxRetryAttempts = 1000
	// MaxDedupeBuckets bounds dedupe.window / dedupe.bucket: every commit
	// looks an id up in each set of the window.
	MaxDedupeBuckets = 1024
	// MaxSimulateKeys bounds simulate[].keys: the generator keeps a record
	// per user or device, allocated at start.
	MaxSimulateKeys = 1000000
	// MaxStateCacheSize bounds state_cache_size: keys' state an owner keeps
	// in memory per partition (grown as keys are seen, not at start).
	MaxStateCacheSize = 10000000
)

var pipelineNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// validate records every problem of a decoded file in c. Presence is read
// from c's lines: a key absent from the file takes its default, a key
// present with a value out of range is a problem.
func validate(c *checker, f *File) {
	if f.Redis != nil {
		validateRedis(c, f.Redis)
	}
	if a := f.HTTP.Addr; c.has("http.addr") && a != "" && a != "off" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			c.addf("http.addr", "want host:port, \"\" or \"off\", got %q", a)
		}
	}
	if len(f.Pipelines) == 0 {
		c.addf("pipelines", "at least one pipeline is required")
	}
	first := map[string]int{} // pipeline name → index
	for i, p := range f.Pipelines {
		path := fmt.Sprintf("pipelines[%d]", i)
		validatePipeline(c, path, p)
		if p.Name == "" {
			continue
		}
		if j, dup := first[p.Name]; dup {
			c.addf(path+".name", "duplicate pipeline name %q (first at line %d)", p.Name, c.lineOf(fmt.Sprintf("pipelines[%d].name", j)))
			continue
		}
		first[p.Name] = i
	}
	validateShared(c, f.Pipelines)
	for i, s := range f.Simulate {
		path := fmt.Sprintf("simulate[%d]", i)
		validateSimulate(c, path, s, first)
		validateVia(c, path+".via", f, s)
	}
	validateSchemas(c, f)
	validateTracing(c, f.Tracing)
	validateSources(c, f, first)
}

func validateRedis(c *checker, r *Redis) {
	switch {
	case r.URL != "" && len(r.Addrs) > 0:
		c.addf("redis.addrs", "set url or addrs, not both")
	case r.URL == "" && len(r.Addrs) == 0:
		c.addf("redis.url", "required (or addrs for Redis Cluster)")
	case r.URL != "":
		// redisurl's errors hold no part of the password; the path names
		// the URL, so keep only the cause.
		if opt, err := redisurl.ParseURL(r.URL); err != nil {
			var ue *redisurl.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			c.addf("redis.url", "want redis://[user:password@]host:port[/db] or rediss://…: %v", err)
		} else {
			if opt.Password != "" && (r.Password != "" || r.PasswordEnv != "" || r.PasswordFile != "") {
				c.addf("redis.url", "has a password and so does redis.password, password_env or password_file: give it in one place")
			}
			if opt.Username != "" && r.Username != "" {
				c.addf("redis.username", "the url has a user too: give it in one place")
			}
		}
	}
	for i, a := range r.Addrs {
		switch {
		case strings.Contains(a, "@"):
			c.addf(fmt.Sprintf("redis.addrs[%d]", i), "want host:port, got %q: give the user and password in redis.username and redis.password_env or password_file", redisurl.Redact(a))
		case !validHostPort(a):
			c.addf(fmt.Sprintf("redis.addrs[%d]", i), "want host:port, got %q", a)
		}
	}
	set := 0
	for _, v := range []string{r.Password, r.PasswordEnv, r.PasswordFile} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		c.addf("redis.password", "set one of password, password_env and password_file")
	}
	if r.PasswordEnv != "" && !envNameRE.MatchString(r.PasswordEnv) {
		c.addf("redis.password_env", "want the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*), got %q", r.PasswordEnv)
	}
	if t := r.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		c.addf("redis.tls.key_file", "cert_file and key_file go together: set both or neither")
	}
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func validHostPort(a string) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

func validatePipeline(c *checker, path string, p *Pipeline) {
	at := func(key string) string { return path + "." + key }
	set := func(key string) bool { return c.has(at(key)) }

	switch {
	case p.Name == "":
		c.addf(at("name"), "required")
	case !pipelineNameRE.MatchString(p.Name):
		c.addf(at("name"), "%q must match %s", p.Name, pipelineNameRE)
	}

	in := p.Input
	switch {
	case in.Stream == "":
		c.addf(at("input.stream"), "required")
	case strings.ContainsAny(in.Stream, "{}"):
		c.addf(at("input.stream"), "must not contain '{' or '}' (partition streams add their own hash tags)")
	}
	if set("input.partitions") && (in.Partitions < 1 || in.Partitions > MaxPartitions) {
		c.addf(at("input.partitions"), "must be between 1 and %d", MaxPartitions)
	}
	if set("ordering") && p.Ordering != processor.OrderingKey && p.Ordering != processor.OrderingNone {
		c.addf(at("ordering"), "want %q or %q, got %q", processor.OrderingKey, processor.OrderingNone, p.Ordering)
	}
	hb, st := p.Group.Heartbeat, p.Group.SessionTimeout
	if hb <= 0 {
		hb = processor.DefaultHeartbeat
	}
	if st <= 0 {
		st = processor.DefaultSessionTimeout
	}
	if (set("group.heartbeat") || set("group.session_timeout")) && p.Group.Heartbeat >= 0 && p.Group.SessionTimeout >= 0 && st < 2*hb {
		c.addf(at("group.session_timeout"), "%s must be at least twice the heartbeat %s", st, hb)
	}
	if set("input.start") && in.Start != processor.StartOldest && in.Start != processor.StartNewest {
		c.addf(at("input.start"), "want %q or %q, got %q", processor.StartOldest, processor.StartNewest, in.Start)
	}

	checkPath(c, at("key"), p.Key, in.Payload)
	if set("input.event_time") {
		checkPath(c, at("input.event_time"), in.EventTime, in.Payload)
	}
	if set("wrong_partition") && p.WrongPartition != processor.WrongPartitionProcess && p.WrongPartition != processor.WrongPartitionDeadLetter {
		c.addf(at("wrong_partition"), "want %q or %q, got %q", processor.WrongPartitionProcess, processor.WrongPartitionDeadLetter, p.WrongPartition)
	}
	if set("state_cache_size") && (p.StateCacheSize < 1 || p.StateCacheSize > MaxStateCacheSize) {
		c.addf(at("state_cache_size"), "must be between 1 and %d", MaxStateCacheSize)
	}
	if set("timers.allowed_lateness") && p.Timers.AllowedLateness < 0 {
		c.addf(at("timers.allowed_lateness"), "must be at least 0")
	}
	if p.Dedupe != nil {
		checkPath(c, at("dedupe.id"), p.Dedupe.ID, in.Payload)
		w, b := p.Dedupe.Window, p.Dedupe.Bucket
		if !set("dedupe.window") {
			c.addf(at("dedupe.window"), "required")
		} else {
			positive(c, at("dedupe.window"), w)
		}
		if set("dedupe.bucket") && positive(c, at("dedupe.bucket"), b) && w > 0 {
			switch {
			case b > w:
				c.addf(at("dedupe.bucket"), "%s must not exceed window %s", b, w)
			case b < time.Millisecond:
				c.addf(at("dedupe.bucket"), "must be at least 1ms")
			case w/b > MaxDedupeBuckets:
				c.addf(at("dedupe.bucket"), "%s splits window %s into %d sets, over %d: use a wider bucket", b, w, w/b, MaxDedupeBuckets)
			}
		}
	}

	for _, k := range []struct {
		key      string
		v, limit int
	}{
		{"batch_size", p.BatchSize, MaxBatchSize}, {"lanes", p.Lanes, MaxLanes},
		{"max_inflight", p.MaxInflight, MaxInflight}, {"retry.max_attempts", p.Retry.MaxAttempts, MaxRetryAttempts},
	} {
		switch {
		case !set(k.key):
		case k.v < 1:
			c.addf(at(k.key), "must be at least 1")
		case k.v > k.limit:
			c.addf(at(k.key), "must be at most %d", k.limit)
		}
	}
	batch := p.BatchSize
	if !set("batch_size") {
		batch = processor.DefaultBatchSize
	}
	if set("max_inflight") && batch >= 1 && p.MaxInflight >= 1 && p.MaxInflight < batch {
		c.addf(at("max_inflight"), "%d is below batch_size %d", p.MaxInflight, batch)
	}
	validateMemory(c, path, p)
	if set("max_event_bytes") && p.MaxEventBytes != -1 && p.MaxEventBytes < 1 {
		c.addf(at("max_event_bytes"), "must be at least 1, or -1 to disable the check")
	}
	for _, k := range []struct {
		key string
		v   time.Duration
	}{{"block", p.Block}, {"shutdown_timeout", p.ShutdownTimeout}, {"retry.backoff", p.Retry.Backoff}, {"retry.max_backoff", p.Retry.MaxBackoff}, {"retry.reclaim_after", p.Retry.ReclaimAfter}, {"group.heartbeat", p.Group.Heartbeat}, {"group.session_timeout", p.Group.SessionTimeout},
		{"step_timeout", p.StepTimeout}, {"timers.tick", p.Timers.Tick}, {"timers.idle_watermark", p.Timers.IdleWatermark}} {
		if set(k.key) {
			positive(c, at(k.key), k.v)
		}
	}
	if set("retry.backoff") && set("retry.max_backoff") && p.Retry.MaxBackoff > 0 && p.Retry.MaxBackoff < p.Retry.Backoff {
		c.addf(at("retry.max_backoff"), "%s is below backoff %s", p.Retry.MaxBackoff, p.Retry.Backoff)
	}

	if set("dead_letter.stream") && p.DeadLetter.Stream != "" && p.DeadLetter.Stream == in.Stream {
		c.addf(at("dead_letter.stream"), "must differ from input.stream")
	}
	if p.DeadLetter.MaxLen < 0 {
		c.addf(at("dead_letter.max_len"), "must be at least 0 (0 means no cap)")
	}
	validateRetention(c, at("input.retention"), p.Input.Retention)
	validateRetention(c, at("dead_letter.retention"), p.DeadLetter.Retention)
}

func validateRetention(c *checker, path string, r *Retention) {
	for _, pr := range r.problems(func(f string) bool { return c.has(path + "." + f) }) {
		if pr[0] == "" {
			c.addf(path, "%s", pr[1])
		} else {
			c.addf(path+"."+pr[0], "%s", pr[1])
		}
	}
}

// validateMemory checks input.partitions × max_inflight against
// MaxInflightEntries, with each left-out field at the engine's default. It
// says nothing when a factor is out of its own range (reported already),
// and reports the problem on a field the file sets.
func validateMemory(c *checker, path string, p *Pipeline) {
	at := func(key string) string { return path + "." + key }
	// value returns the field's value, or def when the file leaves it out,
	// and whether it is within 1..limit.
	value := func(key string, v, def, limit int) (int, bool) {
		if !c.has(at(key)) {
			return def, true
		}
		return v, v >= 1 && v <= limit
	}
	parts, ok1 := value("input.partitions", p.Input.Partitions, processor.DefaultPartitions, MaxPartitions)
	batch, ok2 := value("batch_size", p.BatchSize, processor.DefaultBatchSize, MaxBatchSize)
	inflight, ok3 := value("max_inflight", p.MaxInflight, processor.DefaultInflightBatches*batch, MaxInflight)
	if !ok1 || !ok2 || !ok3 || inflight < batch {
		return
	}
	inflightText := strconv.Itoa(inflight)
	if !c.has(at("max_inflight")) {
		inflightText = fmt.Sprintf("%d (%d × batch_size by default)", inflight, processor.DefaultInflightBatches)
	}
	if n := int64(parts) * int64(inflight); n > MaxInflightEntries {
		// On the first of these that the file sets; one of them is, as the
		// defaults are within the bound.
		blame := at("max_inflight")
		for _, k := range []string{"max_inflight", "input.partitions", "batch_size"} {
			if c.has(at(k)) {
				blame = at(k)
				break
			}
		}
		c.addf(blame, "input.partitions %d × max_inflight %s = %d entries in flight per worker, over %d: lower one of them",
			parts, inflightText, n, MaxInflightEntries)
	}
}

// checkPath checks a key or dedupe id path: required, and a valid dotted
// path when the payload is JSON (a plain field name otherwise).
func checkPath(c *checker, path, v, payload string) {
	if v == "" {
		c.addf(path, "required")
		return
	}
	if payload != "" {
		if _, err := ParsePath(v); err != nil {
			c.addf(path, "%v", err)
		}
	}
}

// positive reports whether d > 0, recording a problem if not.
func positive(c *checker, path string, d time.Duration) bool {
	if d <= 0 {
		c.addf(path, "must be greater than 0")
		return false
	}
	return true
}

// validateShared checks pipelines that read the same stream: they must
// agree on its partitions and use different groups, or they would take
// each other's entries.
func validateShared(c *checker, ps []*Pipeline) {
	type reader struct {
		i          int
		partitions int
		group      string
	}
	seen := map[string][]reader{}
	for i, p := range ps {
		if p.Input.Stream == "" || p.Input.Partitions < 0 || p.Input.Partitions > MaxPartitions {
			continue // reported already
		}
		r := reader{i: i, partitions: p.Input.Partitions, group: p.Input.Group}
		if r.partitions == 0 {
			r.partitions = processor.DefaultPartitions
		}
		if r.group == "" {
			r.group = p.Name
		}
		for _, o := range seen[p.Input.Stream] {
			path := fmt.Sprintf("pipelines[%d].input", i)
			if o.partitions != r.partitions {
				c.addf(path+".partitions", "pipelines[%d] reads stream %q with %d partitions; both must agree", o.i, p.Input.Stream, o.partitions)
			}
			if o.group == r.group {
				c.addf(path+".group", "pipelines[%d] already reads stream %q with group %q", o.i, p.Input.Stream, r.group)
			}
		}
		seen[p.Input.Stream] = append(seen[p.Input.Stream], r)
	}
}

func validateSimulate(c *checker, path string, s Simulate, pipelines map[string]int) {
	at := func(key string) string { return path + "." + key }
	switch _, ok := pipelines[s.Pipeline]; {
	case s.Pipeline == "":
		c.addf(at("pipeline"), "required")
	case !ok:
		c.addf(at("pipeline"), "no pipeline named %q in this file", s.Pipeline)
	}
	switch s.Kind {
	case "":
		c.addf(at("kind"), "required")
	case SimulateClickstream, SimulateIoT:
	default:
		c.addf(at("kind"), "want %q or %q, got %q", SimulateClickstream, SimulateIoT, s.Kind)
	}
	if c.has(at("rate")) && (!(s.Rate > 0) || math.IsInf(s.Rate, 0)) {
		c.addf(at("rate"), "must be a number greater than 0")
	}
	switch {
	case !c.has(at("keys")):
	case s.Keys < 1:
		c.addf(at("keys"), "must be at least 1")
	case s.Keys > MaxSimulateKeys:
		c.addf(at("keys"), "must be at most %d", MaxSimulateKeys)
	}
	for _, k := range []struct {
		key string
		v   float64
	}{{"duplicates", s.Duplicates}, {"bad", s.Bad}} {
		if !(k.v >= 0 && k.v <= 1) { // NaN too
			c.addf(at(k.key), "must be between 0 and 1")
		}
	}
}

// validateVia checks that a simulate entry's way in exists in the file.
func validateVia(c *checker, path string, f *File, s Simulate) {
	switch {
	case s.Via == "":
	case s.Via == SimulateViaHTTP:
		if f.Sources == nil || f.Sources.HTTP == nil {
			c.addf(path, "needs sources.http in this file")
		} else if _, _, ok := f.ViaHTTPToken(s); !ok {
			c.addf(path, "no token of sources.http.tokens may write to pipeline %q", s.Pipeline)
		}
	case strings.HasPrefix(s.Via, SimulateViaMQTT):
		if _, _, ok := f.ViaMQTT(s); !ok {
			c.addf(path, "no MQTT source %q in sources.mqtt with a topic for pipeline %q", strings.TrimPrefix(s.Via, SimulateViaMQTT), s.Pipeline)
		}
	default:
		c.addf(path, "want %q or %q<source name>, got %q", SimulateViaHTTP, SimulateViaMQTT, s.Via)
	}
}

// validateCaps refuses max_len on an output that a pipeline of the file
// reads: MAXLEN trims as it appends, whatever that pipeline's group has
// read, and would lose what it had not. retention is the safe cap.
func validateCaps(c *checker, f *File) {
	type policy struct {
		r    processor.Retention
		path string
	}
	seen := map[string]policy{} // output stream -> the first retention given
	for _, p := range f.Pipelines {
		for _, b := range p.steps {
			if st, ok := b.step.(interface{ retained() []processor.Retained }); ok {
				for _, r := range st.retained() {
					path := p.Steps[b.index].Path
					if first, ok := seen[r.Stream]; !ok {
						seen[r.Stream] = policy{r.Retention, path}
					} else if first.r != r.Retention {
						c.addf(path, "retention of %q differs from the one %s gives it: one stream has one retention", r.Stream, first.path)
					}
				}
			}
			st, ok := b.step.(interface {
				capped() (stream string, maxLen int64, field string)
			})
			if !ok {
				continue
			}
			stream, maxLen, field := st.capped()
			if maxLen <= 0 {
				continue
			}
			for i, r := range f.Pipelines {
				if r.Input.Stream == stream && r.Input.Partitions <= 1 {
					c.addf(p.Steps[b.index].Path+"."+field, "max_len %d trims %q as it appends, whatever pipelines[%d] (%s) has read: it would lose what that pipeline has not read yet; use retention: {max_len: %d} instead, which trims only what every group has acknowledged", maxLen, stream, i, r.Name, maxLen)
					break
				}
			}
		}
	}
}
