package ingest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// sinkConfig has a pipeline with a JSON payload, dedupe and 4 partitions,
// and one whose entry fields are the event.
const sinkConfig = `
pipelines:
  - name: clicks
    input: {stream: clicks, partitions: 4, payload: data}
    key: user.id
    dedupe: {id: event_id, window: 1h}
    max_event_bytes: 200
    steps:
      - filter: 'true'
  - name: flat
    input: {stream: flat}
    key: device
    steps:
      - filter: 'true'
`

func parseFile(tb testing.TB, yaml string) *pipelines.File {
	tb.Helper()
	f, err := pipelines.Parse("test.yaml", []byte(yaml), nil)
	if err != nil {
		tb.Fatalf("Parse = %v", err)
	}
	return f
}

// readPartitions returns every entry of a pipeline's partition streams,
// by stream and entry id.
func readPartitions(tb testing.TB, rdb redis.UniversalClient, p *pipelines.Pipeline) map[string]redis.XMessage {
	tb.Helper()
	out := map[string]redis.XMessage{}
	n := max(p.Input.Partitions, 1)
	for i := range n {
		msgs, err := rdb.XRange(tb.Context(), processor.PartitionStream(p.Input.Stream, i, n), "-", "+").Result()
		if err != nil {
			tb.Fatalf("XRANGE = %v", err)
		}
		for _, m := range msgs {
			out[processor.PartitionStream(p.Input.Stream, i, n)+" "+m.ID] = m
		}
	}
	return out
}

func TestSinkAppend(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parseFile(t, sinkConfig)
	s := NewSink(rdb, f)
	big := `{"user":{"id":"u1"},"event_id":"e9","pad":"` + strings.Repeat("x", 300) + `"}`
	evs := []Event{
		{Data: []byte(`{"user":{"id":"u1"},"event_id":"e1","n":1.50}`)},
		{Data: []byte(`{"user":{"id":"u2"},"event_id":"e2"`)},
		{Data: []byte(`{"user":{},"event_id":"e3"}`)},
		{Data: []byte(`{"user":{"id":"u3"}}`)},
		{Data: []byte(big)},
		{Data: []byte(`{"event_id":"e5"}`), Fields: map[string]string{"other": "x"}},
		{Data: []byte(`[1,2]`)},
		{Data: []byte(`{"user":{"id":"u4"},"event_id":"e6"}`)},
	}
	wantReason := []string{"", ReasonNotJSON, ReasonMissingKey, ReasonMissingID, ReasonTooLarge, ReasonMissingKey, ReasonNotJSON, ""}
	wantPointer := []string{"", "", "/user/id", "/event_id", "", "/user/id", "", ""}

	for _, mode := range []Bad{Reject, Forward} {
		before := len(readPartitions(t, rdb, f.Pipeline("clicks")))
		res, err := s.Append(t.Context(), "clicks", evs, false, mode)
		if err != nil {
			t.Fatalf("Append(mode %d) = %v", mode, err)
		}
		if len(res) != len(evs) {
			t.Fatalf("Append returned %d results, want %d", len(res), len(evs))
		}
		stored := readPartitions(t, rdb, f.Pipeline("clicks"))
		appended := 0
		for i, r := range res {
			got := ""
			if r.Rejected != nil {
				got = r.Rejected.Reason
				if r.Rejected.Pointer != wantPointer[i] {
					t.Errorf("mode %d event %d: pointer %q, want %q (%v)", mode, i, r.Rejected.Pointer, wantPointer[i], r.Rejected)
				}
				if r.Rejected.Message == "" {
					t.Errorf("mode %d event %d: rejection without a message", mode, i)
				}
			}
			if got != wantReason[i] {
				t.Errorf("mode %d event %d: reason %q, want %q (%v)", mode, i, got, wantReason[i], r.Rejected)
			}
			wantAppended := r.Rejected == nil || mode == Forward
			if (r.ID != "") != wantAppended {
				t.Errorf("mode %d event %d: ID %q, appended want %v", mode, i, r.ID, wantAppended)
			}
			if r.ID == "" {
				continue
			}
			appended++
			m, ok := stored[r.Stream+" "+r.ID]
			if !ok {
				t.Errorf("mode %d event %d: entry %s is not in any partition", mode, i, r.ID)
				continue
			}
			if r.Rejected == nil && m.Values["data"] != string(evs[i].Data) {
				t.Errorf("mode %d event %d: stored %q", mode, i, m.Values["data"])
			}
		}
		if len(stored)-before != appended {
			t.Errorf("mode %d: %d entries added, want %d", mode, len(stored)-before, appended)
		}
		// Accepted events went to the partition their key routes to.
		for i, key := range map[int]string{0: "u1", 7: "u4"} {
			if want := processor.PartitionStream("clicks", processor.PartitionOf(key, 4), 4); res[i].Stream != want {
				t.Errorf("mode %d event %d (key %s) in %s, want %s", mode, i, key, res[i].Stream, want)
			}
		}
	}
}

func TestSinkFields(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parseFile(t, sinkConfig)
	s := NewSink(rdb, f)
	res, err := s.Append(t.Context(), "flat", []Event{
		{Data: []byte(` { "t": 21.5 } `), Fields: map[string]string{"device": "d1", "sensor": "temp"}},
		{Data: []byte(`{}`), Fields: map[string]string{"device": "d2"}},
		{Data: []byte(`{"device":"own","t":1}`), Fields: map[string]string{"device": "topic", "sensor": "s"}},
		{Data: []byte(`{"t":1}`), Fields: map[string]string{"sensor": "s"}},
	}, false, Reject)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"device": "d1", "sensor": "temp", "t": "21.5"},
		{"device": "d2"},
		{"device": "topic", "sensor": "s", "t": "1"}, // the topic's level wins
		nil, // no key: the level named device is not there
	}
	stored := readPartitions(t, rdb, f.Pipeline("flat"))
	for i, r := range res {
		if want[i] == nil {
			if r.Rejected == nil || r.Rejected.Reason != ReasonMissingKey || r.Rejected.Pointer != "/device" {
				t.Errorf("event %d: rejection %v, want missing_key at /device", i, r.Rejected)
			}
			continue
		}
		if r.Rejected != nil {
			t.Errorf("event %d rejected: %v", i, r.Rejected)
			continue
		}
		got := stored[r.Stream+" "+r.ID].Values
		if len(got) != len(want[i]) {
			t.Errorf("event %d stored %v, want %v", i, got, want[i])
		}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("event %d field %s = %v, want %v", i, k, got[k], v)
			}
		}
	}
}

func TestWithFields(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		fields map[string]string
		want   string
	}{
		{`{"a":1}`, map[string]string{"b": "x"}, `{"b":"x","a":1}`},
		{`{"a":1}`, map[string]string{"a": "x"}, `{"a":"x"}`},
		{`{"a":1}`, nil, `{"a":1}`},
		{` {"a" : {"n": [1, 2]}, "b":1e400, "a":"again", "c":"\u00e9"} `, map[string]string{"a": "x"}, `{"a":"x","b":1e400,"c":"\u00e9"}`},
		{`{"device":"other","t":1}`, map[string]string{"device": "d7", "sensor": "temp"}, `{"device":"d7","sensor":"temp","t":1}`},
		{` {} `, map[string]string{"b": "x", "a": "\"q\""}, `{"a":"\"q\"","b":"x"} `},
		{"\n{ \"a\" : 1 }", map[string]string{"c": "x"}, `{"c":"x", "a" : 1 }`},
	} {
		got, err := withFields([]byte(tc.in), tc.fields)
		if err != nil || string(got) != tc.want {
			t.Errorf("withFields(%q, %v) = %q, %v, want %q", tc.in, tc.fields, got, err, tc.want)
		}
	}
	for _, in := range []string{`null`, `[]`, `"s"`, `{`, ``} {
		if _, err := withFields([]byte(in), map[string]string{"a": "b"}); err == nil {
			t.Errorf("withFields(%q) = nil error, want one", in)
		}
	}
}

func TestSinkRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	f := parseFile(t, sinkConfig)
	s := NewSink(rdb, f)
	srv.Kill()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, err := s.Append(ctx, "clicks", []Event{
		{Data: []byte(`{"user":{"id":"u1"},"event_id":"e1"}`)},
		{Data: []byte(`nope`)},
	}, false, Reject)
	if err == nil {
		t.Fatal("Append with Redis down = nil error")
	}
	if res[0].ID != "" || res[1].Rejected == nil {
		t.Errorf("results %+v: want no id and the rejection kept", res)
	}
	if _, _, err := s.Pressure(ctx, "clicks", Bounds{MaxLag: 1}); err == nil {
		t.Error("Pressure with Redis down = nil error")
	}
	if _, err := s.Append(ctx, "nope", nil, false, Reject); !errors.Is(err, ErrUnknownPipeline) {
		t.Errorf("Append(unknown pipeline) = %v, want ErrUnknownPipeline", err)
	}
}

func TestSinkPressure(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	f := parseFile(t, sinkConfig)
	s := NewSink(rdb, f)
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	ctx := t.Context()

	if over, _, err := s.Pressure(ctx, "clicks", Bounds{}); over || err != nil {
		t.Fatalf("Pressure(no bounds) = %v, %v", over, err)
	}
	var evs []Event
	for i := range 30 {
		evs = append(evs, Event{Data: []byte(`{"user":{"id":"u` + string(rune('a'+i%26)) + `"},"event_id":"e"}`)})
	}
	if _, err := s.Append(ctx, "clicks", evs, false, Reject); err != nil {
		t.Fatal(err)
	}
	// No group yet: the whole stream is backlog.
	over, after, err := s.Pressure(ctx, "clicks", Bounds{MaxLag: 10})
	if err != nil || !over || after != 3*time.Second {
		t.Errorf("Pressure(max_lag 10, lag 30) = %v, %v, %v, want true, 3s", over, after, err)
	}
	if over, _, _ := s.Pressure(ctx, "clicks", Bounds{MaxLag: 30}); over {
		t.Error("Pressure(max_lag 30, lag 30) = over")
	}
	if _, after, _ := s.Pressure(ctx, "clicks", Bounds{MaxLag: 1}); after != MaxRetryAfter {
		t.Errorf("Pressure(max_lag 1, lag 30) retry after %v, want the cap %v", after, MaxRetryAfter)
	}
	// A consumer group that has read everything has no lag; the sample is
	// reused until PressureEvery has passed.
	for i := range 4 {
		stream := processor.PartitionStream("clicks", i, 4)
		if err := rdb.XGroupCreateMkStream(ctx, stream, "clicks", "$").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if over, _, _ := s.Pressure(ctx, "clicks", Bounds{MaxLag: 10}); !over {
		t.Error("Pressure within PressureEvery did not reuse the sample")
	}
	now = now.Add(PressureEvery)
	if over, _, err := s.Pressure(ctx, "clicks", Bounds{MaxLag: 10}); over || err != nil {
		t.Errorf("Pressure(group at the end) = %v, %v, want not over", over, err)
	}
	// Latency: the probe took 5s by the injected clock.
	now = now.Add(PressureEvery)
	step := 0
	s.now = func() time.Time {
		step++
		return now.Add(time.Duration(step) * 5 * time.Second)
	}
	over, after, err = s.Pressure(ctx, "clicks", Bounds{MaxLatency: time.Second})
	if err != nil || !over || after != 5*time.Second {
		t.Errorf("Pressure(max_latency 1s, probe 5s) = %v, %v, %v, want true, 5s", over, after, err)
	}
}

// Probe samples the lag at once, and says when the Redis user may not.
func TestSinkProbe(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	admin := srv.Client(t)
	f := parseFile(t, sinkConfig)
	if err := NewSink(admin, f).Probe(t.Context(), "clicks"); err != nil {
		t.Errorf("Probe = %v", err)
	}
	if err := admin.Do(t.Context(), "ACL", "SETUSER", "producer", "reset", "on", ">pw", "+ping", "+xadd", "~{clicks:*}").Err(); err != nil {
		t.Fatal(err)
	}
	producer := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "producer", Password: "pw"})
	t.Cleanup(func() { _ = producer.Close() })
	err := NewSink(producer, f).Probe(t.Context(), "clicks")
	if err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("Probe as a user without XINFO = %v, want NOPERM", err)
	}
	if err := NewSink(admin, f).Probe(t.Context(), "nope"); !errors.Is(err, ErrUnknownPipeline) {
		t.Errorf("Probe(unknown) = %v", err)
	}
}
