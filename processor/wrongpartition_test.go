package processor

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// An entry XADDed to a partition its key does not route to is counted, and
// processed or dead-lettered as Options.WrongPartition says.
func TestWrongPartition(t *testing.T) {
	for _, policy := range []string{WrongPartitionProcess, WrongPartitionDeadLetter} {
		t.Run(policy, func(t *testing.T) {
			srv := redistest.Start(t)
			c := srv.Client(t)
			ctx := context.Background()
			// Find a key of partition 1, and add it to partition 0 by hand.
			key := "a"
			for PartitionOf(key, 2) != 1 {
				key += "a"
			}
			if err := c.XAdd(ctx, &redis.XAddArgs{Stream: PartitionStream("in", 0, 2), Values: []string{"data", event(key, 0)}}).Err(); err != nil {
				t.Fatal(err)
			}
			obs := &wrongObserver{}
			p, err := New(c, Options{Pipeline: "t", Stream: "in", Partitions: 2, Decoder: jsonDecoder, Handler: HandlerFunc(emitHandler),
				Observer: obs, WrongPartition: policy, Block: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- p.Run(rctx) }()
			waitFor(t, 10*time.Second, "the entry settled", func() bool { return xlen(t, c, "out")+xlen(t, c, "in:dlq") == 1 })
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if n := obs.wrong.Load(); n != 1 {
				t.Errorf("wrong-partition count = %d, want 1", n)
			}
			want := map[string]int64{WrongPartitionProcess: 1, WrongPartitionDeadLetter: 0}[policy]
			if got := xlen(t, c, "out"); got != want {
				t.Errorf("outputs = %d, want %d", got, want)
			}
			if policy == WrongPartitionDeadLetter {
				dls, _, _, _ := ReadDeadLetters(ctx, c, "in:dlq", "", 10)
				if len(dls) != 1 || dls[0].Reason != ReasonWrongPartition {
					t.Errorf("dead letters = %+v, want one with reason %s", dls, ReasonWrongPartition)
				}
			}
		})
	}
}

type wrongObserver struct {
	countingObserver
	wrong atomic.Int64
}

func (o *wrongObserver) Committed(c Commit) {
	o.countingObserver.Committed(c)
	o.wrong.Add(int64(c.WrongPartition))
}
