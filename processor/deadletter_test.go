package processor

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// Dead letters round-trip: the original fields come back as they were,
// also when they were too many for one XADD and were kept as JSON.
func TestDeadLetterFieldsRoundTrip(t *testing.T) {
	wide := make([]string, 0, 8000)
	for i := 0; i < 4000; i++ {
		wide = append(wide, "f"+strconv.Itoa(i), "v"+strconv.Itoa(i))
	}
	for _, fields := range [][]string{{"data", `{"k":"a"}`, "eddy.note", "kept"}, wide} {
		o := &Options{Pipeline: "p", Group: "g", Consumer: "c"}
		m := &Message{ID: "1-1", Stream: "{s:1}", Key: "a", Attempt: 3, Fields: fields}
		d, err := parseDeadLetter("9-9", deadLetterFields(o, m, ReasonMaxAttempts, fmt.Errorf("boom"), time.UnixMilli(1234)))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(d.Fields) != fmt.Sprint(fields) {
			t.Errorf("fields after a round trip differ (%d strings, want %d)", len(d.Fields), len(fields))
		}
		if d.Reason != ReasonMaxAttempts || d.Error != "boom" || d.Attempts != 3 || d.Stream != "{s:1}" ||
			d.EntryID != "1-1" || d.Key != "a" || d.Pipeline != "p" || d.Group != "g" || d.Consumer != "c" || d.FailedAt.UnixMilli() != 1234 {
			t.Errorf("parsed dead letter = %+v", d)
		}
	}
	if _, err := parseDeadLetter("1-1", []string{"a", "b"}); err == nil {
		t.Error("parseDeadLetter of an entry eddy did not write = nil error, want one")
	}
}

// A dead-lettered entry, replayed after the cause is fixed, is processed
// once and leaves the dead-letter stream.
func TestReplayDeadLetter(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	var fixed atomic.Bool
	h := HandlerFunc(func(ctx context.Context, m *Message) error {
		if m.Key == "b" && !fixed.Load() {
			return Permanentf(ReasonInvalid, "b is not accepted yet")
		}
		return emitHandler(ctx, m)
	})
	o := workerOptions("c1", h)
	o.Partitions = 3
	p, err := New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, c, 3, []Record{
		{Key: "a", Fields: []string{"data", event("a", 0)}},
		{Key: "b", Fields: []string{"data", event("b", 0), "extra", "x"}},
	})
	runUntil(t, p, func() bool { return xlen(t, c, "out") == 1 && xlen(t, c, "in:dlq") == 1 }, 10*time.Second)

	c.XAdd(ctx, &redis.XAddArgs{Stream: "in:dlq", Values: []string{"not", "ours"}})
	dls, _, foreign, err := ReadDeadLetters(ctx, c, "in:dlq", "", 10)
	if len(foreign) != 1 {
		t.Errorf("foreign entries = %v, want the one eddy did not write", foreign)
	}
	if err != nil || len(dls) != 1 {
		t.Fatalf("ReadDeadLetters = %v, %v; want 1", dls, err)
	}
	d := dls[0]
	if want := PartitionStream("in", PartitionOf("b", 3), 3); d.Stream != want || d.Reason != ReasonInvalid {
		t.Errorf("dead letter stream %q reason %q, want %q invalid", d.Stream, d.Reason, want)
	}
	fixed.Store(true)
	if _, err := Replay(ctx, c, "in:dlq", d); err != nil {
		t.Fatal(err)
	}
	if n := xlen(t, c, "in:dlq"); n != 1 {
		t.Errorf("entries in the dead-letter stream after replay = %d, want only the foreign one", n)
	}
	runUntil(t, p, func() bool { return xlen(t, c, "out") == 2 }, 10*time.Second)
	_, byID := outputsByKey(t, c)
	if byID["b-0"] != 1 || byID["a-0"] != 1 {
		t.Errorf("outputs per id = %v, want a-0 and b-0 once each", byID)
	}
	for i := 0; i < 3; i++ {
		if n := pendingCount(t, c, PartitionStream("in", i, 3)); n != 0 {
			t.Errorf("partition %d pending = %d, want 0", i, n)
		}
	}
}
