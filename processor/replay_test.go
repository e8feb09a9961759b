package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// TestReplayConcurrentOnce replays the same dead letters from several
// goroutines at once, on a real redis-server, as two operators (or one
// double click) would: each dead letter is appended to its stream exactly
// once, and every other replay of it reports ErrDeadLetterGone.
func TestReplayConcurrentOnce(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t)
	const dlq, letters, replayers = "s:dlq", 20, 8
	for i := range letters {
		stream := fmt.Sprintf("{s:%d}", i%2)
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: []string{
			"data", fmt.Sprint(i), "eddy.reason", ReasonInvalid, "eddy.stream", stream, "eddy.id", "1-1", "eddy.pipeline", "p",
		}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	dls, _, _, err := ReadDeadLetters(ctx, c, dlq, "", letters)
	if err != nil || len(dls) != letters {
		t.Fatalf("ReadDeadLetters = %d dead letters, %v; want %d", len(dls), err, letters)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done = map[string]int{}
		gone int
		errs []error
	)
	start := make(chan struct{})
	for range replayers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for _, d := range dls {
				id, err := Replay(ctx, c, dlq, d)
				mu.Lock()
				switch {
				case errors.Is(err, ErrDeadLetterGone):
					gone++
				case err != nil:
					errs = append(errs, err)
				case id == "":
					errs = append(errs, fmt.Errorf("Replay(%s) = \"\", nil; want the new entry's id", d.ID))
				default:
					done[d.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	for _, d := range dls {
		if done[d.ID] != 1 {
			t.Errorf("dead letter %s replayed %d times, want 1", d.ID, done[d.ID])
		}
	}
	if want := letters * (replayers - 1); gone != want {
		t.Errorf("replays that found the dead letter gone = %d, want %d", gone, want)
	}
	seen := map[string]int{}
	for _, s := range []string{"{s:0}", "{s:1}"} {
		es, err := c.XRange(ctx, s, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			seen[fmt.Sprint(e.Values["data"])]++
		}
	}
	for i := range letters {
		if n := seen[fmt.Sprint(i)]; n != 1 {
			t.Errorf("event %d appended %d times, want 1", i, n)
		}
	}
	if n, err := c.XLen(ctx, dlq).Result(); n != 0 || err != nil {
		t.Errorf("XLEN %s after the replays = %d, %v; want 0", dlq, n, err)
	}
}

// TestReplayGone: a dead letter no longer in the dead-letter stream is not
// appended (ErrDeadLetterGone), and a timer firing is refused.
func TestReplayGone(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t)
	tests := []struct {
		name    string
		d       DeadLetter
		wantErr error
	}{
		{"never there", DeadLetter{ID: "1-1", Stream: "{s:0}", Fields: []string{"data", "x"}}, ErrDeadLetterGone},
		{"timer firing", DeadLetter{ID: "1-2", Stream: "{s:0}", Timer: "t"}, nil},
	}
	for _, tt := range tests {
		id, err := Replay(ctx, c, "s:dlq", tt.d)
		if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || id != "" {
			t.Errorf("%s: Replay = %q, %v; want an error (%v)", tt.name, id, err, tt.wantErr)
		}
	}
	if n, err := c.XLen(ctx, "{s:0}").Result(); n != 0 || err != nil {
		t.Errorf("XLEN {s:0} = %d, %v; want 0", n, err)
	}
}

// On Redis Cluster, Replay works when the dead-letter stream and the
// stream share a slot (a hash tag), as the MULTI/EXEC it replaced needed;
// across slots it fails and writes nothing.
func TestReplayCluster(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t, 3).Client(t)
	tests := []struct {
		name, dlq, stream string
		ok                bool
	}{
		{"one slot", "{orders}:dlq", "{orders}", true},
		{"two slots", "orders:dlq", "{orders:0}", false},
	}
	for _, tt := range tests {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: tt.dlq, Values: []string{
			"data", "1", "eddy.reason", ReasonInvalid, "eddy.stream", tt.stream, "eddy.id", "1-1", "eddy.pipeline", "p",
		}}).Err(); err != nil {
			t.Fatal(err)
		}
		dls, _, _, err := ReadDeadLetters(ctx, c, tt.dlq, "", 10)
		if err != nil || len(dls) != 1 {
			t.Fatalf("%s: ReadDeadLetters = %v, %v", tt.name, dls, err)
		}
		_, err = Replay(ctx, c, tt.dlq, dls[0])
		if (err == nil) != tt.ok {
			t.Errorf("%s: Replay = %v, want ok %v", tt.name, err, tt.ok)
		}
		var wantLen, wantDLQ int64 = 0, 1
		if tt.ok {
			wantLen, wantDLQ = 1, 0
		}
		if n := c.XLen(ctx, tt.stream).Val(); n != wantLen {
			t.Errorf("%s: XLEN %s = %d, want %d", tt.name, tt.stream, n, wantLen)
		}
		if n := c.XLen(ctx, tt.dlq).Val(); n != wantDLQ {
			t.Errorf("%s: XLEN %s = %d, want %d", tt.name, tt.dlq, n, wantDLQ)
		}
	}
}

// An entry too wide for one Lua call is replayed once too, when replays
// race.
func TestReplayWideConcurrentOnce(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t)
	fields := make([]string, 0, 2*maxEffectStrings)
	for i := range maxEffectStrings {
		fields = append(fields, fmt.Sprint("f", i), "v")
	}
	d := DeadLetter{Stream: "{s:0}", Fields: fields}
	var err error
	if d.ID, err = c.XAdd(ctx, &redis.XAddArgs{Stream: "s:dlq", Values: []string{"eddy.reason", ReasonInvalid}}).Result(); err != nil {
		t.Fatal(err)
	}
	const replayers = 4
	errs := make([]error, replayers)
	var wg sync.WaitGroup
	for i := range replayers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Replay(ctx, c, "s:dlq", d)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrDeadLetterGone):
			t.Errorf("Replay = %v, want nil or ErrDeadLetterGone", err)
		}
	}
	es, err := c.XRange(ctx, "{s:0}", "-", "+").Result()
	if ok != 1 || err != nil || len(es) != 1 || len(es[0].Values) != maxEffectStrings {
		t.Errorf("%d replays succeeded, {s:0} holds %d entries (%v); want one, of %d fields", ok, len(es), err, maxEffectStrings)
	}
}
