package processor_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/processor"
)

// A pipeline written in Go: the Decoder takes the key from a field, the
// Handler upper-cases each word into an output stream.
func Example() {
	mr := miniredis.NewMiniRedis() // any Redis; miniredis keeps the example self-contained
	if err := mr.Start(); err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	p, err := processor.New(rdb, processor.Options{
		Pipeline: "shout",
		Stream:   "words",
		Block:    50 * time.Millisecond,
		Decoder: processor.DecoderFunc(func(m *processor.Message) error {
			user, ok := m.Field("user")
			if !ok {
				return processor.Permanentf(processor.ReasonMissingKey, "entry %s has no user field", m.ID)
			}
			m.Key = user
			return nil
		}),
		Handler: processor.HandlerFunc(func(ctx context.Context, m *processor.Message) error {
			word, _ := m.Field("word")
			m.Emit("shouted", 0, "user", m.Key, "word", strings.ToUpper(word))
			return nil
		}),
	})
	if err != nil {
		panic(err)
	}
	prod := processor.NewProducer(rdb, "words", 1, 0)
	if _, err := prod.Send(ctx, []processor.Record{
		{Key: "ada", Fields: []string{"user", "ada", "word", "hello"}},
		{Key: "ada", Fields: []string{"user", "ada", "word", "world"}},
		{Fields: []string{"word", "orphan"}}, // no user: dead-lettered
	}); err != nil {
		panic(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- p.Run(runCtx) }()
	for rdb.XLen(ctx, "shouted").Val() < 2 || rdb.XLen(ctx, "words:dlq").Val() < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		panic(err)
	}

	for _, e := range rdb.XRange(ctx, "shouted", "-", "+").Val() {
		fmt.Println(e.Values["user"], e.Values["word"])
	}
	dl := rdb.XRange(ctx, "words:dlq", "-", "+").Val()[0]
	fmt.Println("dead letter:", dl.Values["word"], dl.Values["eddy.reason"])
	// Output:
	// ada HELLO
	// ada WORLD
	// dead letter: orphan missing_key
}
