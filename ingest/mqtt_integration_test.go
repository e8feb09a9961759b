package ingest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/internal/mosquittotest"
	"github.com/eddy-streams/eddy/internal/redisserver"
	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// Environment of the ingest child process (TestMQTTIngestChild).
const (
	childConfigEnv = "EDDY_TEST_MQTT_CHILD_CONFIG"
	childRedisEnv  = "EDDY_TEST_MQTT_CHILD_REDIS"
)

// TestMQTTIngestChild is the ingest process of
// TestMQTTExactlyOnceUnderChaos: the test binary run again with this test
// alone and the environment above. It runs the config's first MQTT source
// into its Redis until it is killed (or gets SIGTERM).
func TestMQTTIngestChild(t *testing.T) {
	cfg := os.Getenv(childConfigEnv)
	if cfg == "" {
		t.Skip("the ingest process of TestMQTTExactlyOnceUnderChaos; runs only as its child")
	}
	f, err := pipelines.Load(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv(childRedisEnv)})
	defer rdb.Close()
	log, err := zap.NewProduction()
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMQTT(f, &f.Sources.MQTT[0], NewSink(rdb, f), MQTTOptions{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(t.Context(), syscall.SIGTERM)
	defer stop()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// ingestChild is one run of the ingest process.
type ingestChild struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startIngestChild(t *testing.T, cfg, redisAddr, log string) *ingestChild {
	t.Helper()
	out, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMQTTIngestChild$", "-test.count=1") //nolint:noctx // killed by the test
	cmd.Env = append(os.Environ(), childConfigEnv+"="+cfg, childRedisEnv+"="+redisAddr)
	cmd.Stdout, cmd.Stderr = out, out
	redisserver.Detach(cmd) // killed with the test binary
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &ingestChild{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(c.done)
	}()
	t.Cleanup(c.kill)
	return c
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *ingestChild) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

func logCount(path, what string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), what)
}

// Done-when 1 of issue 10: several devices publish 100,000 readings at
// QoS 1, each with its own id, each publish retried until the broker's
// PUBACK. The ingest process is SIGKILLed twice and Mosquitto restarted
// once while they do. A worker with dedupe on the reading id processes
// them downstream: every published id is output exactly once, none lost.
func TestMQTTExactlyOnceUnderChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 readings and three crashes: skipped with -short")
	}
	const (
		devices   = 10
		perDevice = 10_000
		total     = devices * perDevice
		inFlight  = 16 // concurrent publishes per device
	)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	broker := mosquittotest.StartWith(t, mosquittotest.Options{Conf: []string{"max_inflight_messages 0"}})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "chaos.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`http: {addr: "off"}
sources:
  mqtt:
    - name: chaos
      broker: %s
      client_id: chaos-ingest
      receive_maximum: 2000
      batch_size: 500
      reconnect: {min_backoff: 20ms, max_backoff: 500ms}
      connect_timeout: 2s
      topics:
        - {filter: "sensors/{device_id}/{sensor}", pipeline: iot}
pipelines:
  - name: iot
    input: {stream: sensors, partitions: 4, payload: data}
    key: device_id
    dedupe: {id: reading_id, window: 1h}
    batch_size: 512
    steps:
      - output: {stream: "sensors:out"}
`, broker.URL())), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := pipelines.Load(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}

	logPath := func(i int) string { return filepath.Join(dir, fmt.Sprintf("ingest-%d.log", i)) }
	child := startIngestChild(t, cfg, srv.Addr(), logPath(1))
	waitFor(t, 30*time.Second, "the first ingest process to subscribe", func() bool { return logCount(logPath(1), "mqtt_subscribed") > 0 })

	// The worker, downstream, for the whole run.
	po := f.Pipeline("iot").Options()
	po.Consumer = "worker-1"
	proc, err := processor.New(rdb, po)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(t.Context())
	wdone := make(chan error, 1)
	go func() { wdone <- proc.Run(wctx) }()
	defer func() {
		wcancel()
		if err := <-wdone; err != nil {
			t.Errorf("worker Run = %v", err)
		}
	}()

	// The devices: each reading is published until the broker acks it.
	start := time.Now()
	var published, retries atomic.Int64
	ctx := t.Context()
	var wg sync.WaitGroup
	for d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishDevice(ctx, t, broker.Addr(), d, perDevice, inFlight, &published, &retries)
		}()
	}

	// The chaos, at set shares of the readings published.
	waitPublished := func(n int64) {
		waitFor(t, 60*time.Second, fmt.Sprintf("%d readings published", n), func() bool { return published.Load() >= n })
	}
	waitPublished(total / 5)
	child.kill()
	t.Logf("SIGKILLed the ingest process at %d published", published.Load())
	child = startIngestChild(t, cfg, srv.Addr(), logPath(2))
	waitPublished(total / 2)
	broker.Restart(t)
	t.Logf("restarted mosquitto at %d published", published.Load())
	waitFor(t, 30*time.Second, "the second ingest process to reconnect", func() bool { return logCount(logPath(2), "mqtt_connected") >= 2 })
	waitPublished(total * 7 / 10)
	child.kill()
	t.Logf("SIGKILLed the ingest process again at %d published", published.Load())
	startIngestChild(t, cfg, srv.Addr(), logPath(3)) // runs to the end: the test's cleanup kills it

	wg.Wait()
	pubTook := time.Since(start)
	if published.Load() != total {
		t.Fatalf("published %d readings, want %d", published.Load(), total)
	}
	waitFor(t, 90*time.Second, fmt.Sprintf("%d outputs", total), func() bool {
		return rdb.XLen(ctx, "sensors:out").Val() >= total
	})
	took := time.Since(start)

	// Every id exactly once in the output, none lost.
	seen := make(map[string]int, total)
	for last := "-"; ; {
		msgs, err := rdb.XRangeN(ctx, "sensors:out", last, "+", 10_000).Result()
		if err != nil {
			t.Fatal(err)
		}
		if last != "-" && len(msgs) > 0 {
			msgs = msgs[1:] // the entry at last, read already
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			id, _ := m.Values["id"].(string)
			seen[id]++
		}
		last = msgs[len(msgs)-1].ID
	}
	lost, doubled := 0, 0
	for d := range devices {
		for s := range perDevice {
			switch seen[readingID(d, s)] {
			case 0:
				lost++
			case 1:
			default:
				doubled++
			}
		}
	}
	if lost > 0 || doubled > 0 || len(seen) != total {
		t.Errorf("outputs: %d ids, %d lost, %d output more than once; want %d ids each once", len(seen), lost, doubled, total)
	}
	input := entryCount(t, rdb, f.Pipeline("iot"))
	pending := int64(0)
	for i := range 4 {
		p, err := rdb.XPending(ctx, processor.PartitionStream("sensors", i, 4), "iot").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		if p != nil {
			pending += p.Count
		}
	}
	t.Logf("%d readings from %d devices: published in %v, all output once in %v (%.0f events/s end to end); "+
		"input entries %d (%d appended again after redelivery, dropped by dedupe), publish retries %d, pending %d",
		total, devices, pubTook.Round(time.Millisecond), took.Round(time.Millisecond), float64(total)/took.Seconds(),
		input, input-total, retries.Load(), pending)
}

func readingID(device, seq int) string { return fmt.Sprintf("d%02d-%06d", device, seq) }

// publishDevice publishes device's readings, inFlight at a time, each at
// QoS 1 and again after any error (a broker restart), on a new connection,
// until the broker acks it.
func publishDevice(ctx context.Context, t *testing.T, addr string, device, n, inFlight int, published, retries *atomic.Int64) {
	var mu sync.Mutex
	var pub *publisher
	conn := func(old *publisher) *publisher {
		mu.Lock()
		defer mu.Unlock()
		if pub != nil && pub != old {
			return pub
		}
		if pub != nil {
			pub.close()
			pub = nil
		}
		for ctx.Err() == nil {
			p, err := dialPublisher(ctx, addr, fmt.Sprintf("device-%02d", device), pubOptions{})
			if err == nil {
				pub = p
				return p
			}
			time.Sleep(50 * time.Millisecond) // the broker is restarting
		}
		return nil
	}
	seqs := make(chan int)
	go func() {
		defer close(seqs)
		for s := range n {
			seqs <- s
		}
	}()
	var wg sync.WaitGroup
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range seqs {
				payload := fmt.Appendf(nil, `{"reading_id":%q,"seq":%d,"value":%d.5,"unit":"C"}`, readingID(device, s), s, s%40)
				topic := fmt.Sprintf("sensors/d%02d/temperature", device)
				for p := conn(nil); ; p = conn(p) {
					if p == nil {
						return // the test is over
					}
					if err := p.publish(ctx, topic, 1, payload); err == nil {
						break
					}
					retries.Add(1)
				}
				published.Add(1)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	if pub != nil {
		pub.close()
	}
	mu.Unlock()
}
