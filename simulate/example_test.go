package simulate_test

import (
	"context"
	"fmt"
	"time"

	"github.com/eddy-streams/eddy/simulate"
)

func ExampleNewClickstream() {
	g := simulate.NewClickstream(simulate.Options{
		Seed: 1,
		Keys: 2,
		Now:  func() time.Time { return time.UnixMilli(1_700_000_000_000) },
	})
	for range 4 {
		event, key := g.Next()
		fmt.Println(key, string(event))
	}
	// Output:
	// u0 {"event_id":"c-1-0","user_id":"u0","session_id":"s-1-0","type":"view","page":"/","ts":1700000000000,"ua":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"}
	// u1 {"event_id":"c-1-1","user_id":"u1","session_id":"s-1-1","type":"view","page":"/product/1527","ts":1700000000000,"ua":"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"}
	// u1 {"event_id":"c-1-2","user_id":"u1","session_id":"s-1-1","type":"view","page":"/","ts":1700000000000,"ua":"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"}
	// u1 {"event_id":"c-1-3","user_id":"u1","session_id":"s-1-1","type":"view","page":"/category/electronics","ts":1700000000000,"ua":"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"}
}

func ExampleNewIoT() {
	g := simulate.NewIoT(simulate.Options{
		Seed: 1,
		Keys: 100,
		Now:  func() time.Time { return time.UnixMilli(1_700_000_000_000) },
	})
	for range 3 {
		event, key := g.Next()
		fmt.Println(key, string(event))
	}
	// Output:
	// dev-74 {"reading_id":"r-1-0","device_id":"dev-74","sensor":"pressure","value":1008.08,"unit":"hPa","ts":1700000000000,"battery":51}
	// dev-24 {"reading_id":"r-1-1","device_id":"dev-24","sensor":"temperature","value":22.38,"unit":"celsius","ts":1700000000000,"battery":60}
	// dev-70 {"reading_id":"r-1-2","device_id":"dev-70","sensor":"humidity","value":56.75,"unit":"percent","ts":1700000000000,"battery":91}
}

func ExampleFeeder() {
	sent := 0
	f := &simulate.Feeder{
		Generator: simulate.NewIoT(simulate.Options{Seed: 1, Bad: 0.01}),
		// cmd/eddy passes a Sink that XADDs each event to the pipeline's stream.
		Sink: simulate.SinkFunc(func(_ context.Context, batch []simulate.Event) error {
			sent += len(batch)
			return nil
		}),
		Rate:  10_000, // events per second
		Limit: 500,    // stop after 500 events; 0 runs until ctx is done
	}
	if err := f.Run(context.Background()); err != nil {
		fmt.Println("feeder:", err)
	}
	fmt.Println("sent", sent)
	// Output:
	// sent 500
}
