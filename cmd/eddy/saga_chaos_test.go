package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/simulate"
)

// sagaChaosConfig is configs/orders.yaml's saga pipeline with the pool's
// timings of the chaos test and 5s timeouts.
const sagaChaosConfig = `http: {addr: off}
pipelines:
  - name: saga
    input: {stream: orders, partitions: 4, payload: data}
    key: order_id
    wrong_partition: dead_letter
    dedupe: {id: id, window: 1h}
    group: {heartbeat: 250ms, session_timeout: 2s}
    shutdown_timeout: 2s
    timers: {tick: 50ms}
    steps:
      - saga:
          name: order
          output: {stream: "orders:commands"}
          start: 'type == "order.placed"'
          correlate: command_id
          fields: {order_id: order_id, amount_cents: amount_cents}
          timeout: 5s
          steps:
            - {name: reserve_inventory, command: {type: inventory.reserve}, done: 'type == "inventory.reserved"',
               failed: 'type == "inventory.rejected"', compensate: {type: inventory.release}}
            - {name: charge_payment, command: {type: payment.charge}, done: 'type == "payment.charged"',
               failed: 'type == "payment.declined"', compensate: {type: payment.refund}}
            - {name: create_shipment, command: {type: shipment.create}, done: 'type == "shipment.created"',
               failed: 'type == "shipment.failed"', compensate: {type: shipment.cancel}}
            - {name: send_confirmation, command: {type: notification.confirm}, done: 'type == "notification.sent"',
               failed: 'type == "notification.failed"'}
`

// sagaChaosSteps are the saga's steps in order.
var sagaChaosSteps = []string{"reserve_inventory", "charge_payment", "create_shipment", "send_confirmation"}

// streamCommands is a simulate.CommandSource over the commands of a saga's
// output stream.
type streamCommands struct {
	c    *redis.Client
	last string
}

func (s *streamCommands) Read(ctx context.Context) ([][]byte, error) {
	res, err := s.c.XRead(ctx, &redis.XReadArgs{Streams: []string{"orders:commands", s.last}, Count: 500, Block: 200 * time.Millisecond}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, e := range res[0].Messages {
		s.last = e.ID
		if e.Values["kind"] == "command" {
			out = append(out, []byte(e.Values["data"].(string)))
		}
	}
	return out, nil
}

// sagaEntry is one entry of orders:commands, decoded.
type sagaEntry struct {
	id, kind string
	data     struct {
		SagaID       string   `json:"saga_id"`
		Step         string   `json:"step"`
		CommandID    string   `json:"command_id"`
		Compensation bool     `json:"compensation"`
		Outcome      string   `json:"outcome"`
		FailedStep   string   `json:"failed_step"`
		Reason       string   `json:"reason"`
		Compensated  []string `json:"compensated"`
	}
}

// Issue 13's saga chaos test: 3 worker processes run 400 order sagas while
// the simulated services answer (15% refused, 5% never answered) and every
// ~1.5s one worker is killed with SIGKILL mid-saga (and a new one started).
// Every saga ends completed, or with its steps done compensated in reverse
// order, never half: an independent check of the command stream finds one
// result per saga, every command once, each saga's commands in the order
// its outcome demands, and the outcome the one the services' answers call
// for (a timeout instead of a completion only where a failover held a
// reply past the step's 5s).
func TestSagaChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("saga chaos: real processes, about 40s")
	}
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := &chaosPool{t: t, url: srv.URL(), cfg: writeFile(t, "saga.yaml", sagaChaosConfig), workers: map[string]*process{}}
	if code, out, errOut := eddy(t, "", "validate", "-c", pool.cfg); code != 0 {
		t.Fatalf("eddy validate = %d %s %s: the saga step must be a built-in (pipelines.NewRegistry)", code, out, errOut)
	}
	for i := 0; i < 3; i++ {
		pool.start()
	}

	services := &simulate.OrderServices{Seed: 13, Fail: 0.15, NoReply: 0.05}
	prod := processor.NewProducer(c, "orders", 4, 0)
	sink := simulate.SinkFunc(func(ctx context.Context, batch []simulate.Event) error {
		recs := make([]processor.Record, len(batch))
		for i, e := range batch {
			recs[i] = processor.Record{Key: e.Key, Fields: []string{"data", string(e.Data)}}
		}
		_, err := prod.Send(ctx, recs)
		return err
	})
	served := make(chan error, 1)
	go func() { served <- services.Run(ctx, &streamCommands{c: c, last: "0"}, sink) }()

	const orders = 400
	produced := make(chan error, 1)
	go func() { // 40 orders/s for 10s, while the chaos goes on
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < orders; {
			<-tick.C
			var recs []processor.Record
			for j := 0; j < 10 && i < orders; j, i = j+1, i+1 {
				data := fmt.Sprintf(`{"id":"e%d","type":"order.placed","order_id":"o%d","amount_cents":%d}`, i, i, 100+i)
				recs = append(recs, processor.Record{Key: fmt.Sprintf("o%d", i), Fields: []string{"data", data}})
			}
			if _, err := prod.Send(ctx, recs); err != nil {
				produced <- err
				return
			}
		}
		produced <- nil
	}()

	results := func() int64 {
		n := int64(0)
		for _, e := range c.XRange(ctx, "orders:commands", "-", "+").Val() {
			if e.Values["kind"] == "saga" {
				n++
			}
		}
		return n
	}
	r := rand.New(rand.NewPCG(13, 1))
	kills := 0
	deadline := time.Now().Add(2 * time.Minute)
	for round := 0; results() < orders; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("not done after 2 minutes: %d sagas ended of %d", results(), orders)
		}
		time.Sleep(1500 * time.Millisecond)
		if round >= 10 { // the last sagas end in peace
			continue
		}
		name, victim := pool.pick(r)
		_ = victim.cmd.Process.Signal(syscall.SIGKILL)
		victim.wait(t, 5*time.Second)
		kills++
		pool.mu.Lock()
		delete(pool.workers, name)
		pool.mu.Unlock()
		pool.start()
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // anything emitted twice would come now
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	for _, p := range pool.workers {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for name, p := range pool.workers {
		if code := p.wait(t, 15*time.Second); code != 0 {
			t.Errorf("worker %s exit code %d after SIGTERM", name, code)
		}
	}

	// The independent check, from the command stream alone.
	bySaga := map[string][]sagaEntry{}
	ids := map[string]int{}
	for _, e := range c.XRange(context.Background(), "orders:commands", "-", "+").Val() {
		var se sagaEntry
		se.id, se.kind = e.Values["id"].(string), e.Values["kind"].(string)
		if err := json.Unmarshal([]byte(e.Values["data"].(string)), &se.data); err != nil {
			t.Fatalf("entry %s: %v", e.ID, err)
		}
		ids[se.id]++
		bySaga[se.data.SagaID] = append(bySaga[se.data.SagaID], se)
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("entry id %s emitted %d times", id, n)
		}
	}
	outcomes := map[string]int{}
	failovers := 0
	answers := &simulate.OrderServices{Seed: 13, Fail: 0.15, NoReply: 0.05} // the same answers
	for i := 0; i < orders; i++ {
		sagaID := fmt.Sprintf("order:o%d:e%d", i, i)
		got := bySaga[sagaID]
		want, outcome, problem := sagaChaosExpect(t, answers, sagaID, got)
		if problem != "" {
			t.Errorf("saga %s: %s; entries %s", sagaID, problem, sagaChaosDump(got))
			continue
		}
		if g, w := sagaChaosDump(got), strings.Join(want, " "); g != w {
			t.Errorf("saga %s:\n got %s\nwant %s", sagaID, g, w)
			continue
		}
		if strings.HasSuffix(outcome, "*") {
			failovers++
		}
		outcomes[strings.TrimSuffix(outcome, "*")]++
	}
	if n := len(bySaga); n != orders {
		t.Errorf("%d sagas in the command stream, want %d", n, orders)
	}
	dead := c.XLen(context.Background(), "orders:dlq").Val()
	t.Logf("saga chaos: %d orders, %d kills; outcomes %v (%d timeouts where a failover held the reply); services %+v; dead letters %d",
		orders, kills, outcomes, failovers, services.Stats(), dead)
	if dead != 0 {
		t.Errorf("%d dead letters, want 0", dead)
	}
	if kills < 5 {
		t.Errorf("only %d kills happened", kills)
	}
	if outcomes["completed"] == 0 || outcomes["compensated"] == 0 || outcomes["failed"] == 0 {
		t.Errorf("outcomes %v: want some of each", outcomes)
	}
}

// sagaChaosExpect derives from a saga's result what its entries must be:
// its steps' commands up to the failed one, the compensations of the steps
// before it in reverse order (every step but the last has one), then the
// result; the outcome (with "*" when a timeout came where the services did
// answer, which only a failover explains); or a problem.
func sagaChaosExpect(t *testing.T, answers *simulate.OrderServices, sagaID string, got []sagaEntry) ([]string, string, string) {
	t.Helper()
	var res *sagaEntry
	for i := range got {
		if got[i].kind == "saga" {
			if res != nil {
				return nil, "", "two results"
			}
			res = &got[i]
		}
	}
	if res == nil {
		return nil, "", "no result: half done"
	}
	failed := len(sagaChaosSteps)
	if res.data.Outcome != "completed" {
		failed = -1
		for i, s := range sagaChaosSteps {
			if s == res.data.FailedStep {
				failed = i
			}
		}
		if failed < 0 {
			return nil, "", "result without a known failed_step"
		}
	}
	var want []string
	marker := ""
	for i := 0; i < len(sagaChaosSteps) && i <= failed; i++ {
		want = append(want, "do:"+sagaChaosSteps[i])
		cmd := fmt.Sprintf(`{"type":"x","saga_id":%q,"command_id":%q,"order_id":"o"}`, sagaID, sagaID+":"+sagaChaosSteps[i]+":do")
		answer := sagaChaosAnswer(t, answers, i, cmd)
		switch {
		case i < failed && answer != "done":
			return nil, "", fmt.Sprintf("step %s went on, but its service answered %s", sagaChaosSteps[i], answer)
		case i == failed && res.data.Reason == "failed" && answer != "failed":
			return nil, "", fmt.Sprintf("step %s failed, but its service answered %s", sagaChaosSteps[i], answer)
		case i == failed && res.data.Reason == "timeout" && answer != "none":
			marker = "*"
		}
	}
	for i := failed - 1; i >= 0 && failed < len(sagaChaosSteps); i-- {
		want = append(want, "undo:"+sagaChaosSteps[i])
	}
	want = append(want, res.data.Outcome)
	if failed == 0 && res.data.Outcome != "failed" || failed > 0 && failed < len(sagaChaosSteps) && res.data.Outcome != "compensated" {
		return nil, "", fmt.Sprintf("outcome %s after failing at step %d", res.data.Outcome, failed)
	}
	return want, res.data.Outcome + marker, ""
}

// sagaChaosAnswer is the services' answer to step i's command: done,
// failed or none.
func sagaChaosAnswer(t *testing.T, answers *simulate.OrderServices, i int, cmd string) string {
	t.Helper()
	types := []string{"inventory.reserve", "payment.charge", "shipment.create", "notification.confirm"}
	cmd = strings.Replace(cmd, `"type":"x"`, fmt.Sprintf("%q:%q", "type", types[i]), 1)
	r, ok, err := answers.Answer([]byte(cmd))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return "none"
	}
	var v struct{ Type string }
	_ = json.Unmarshal(r.Data, &v)
	if v.Type == simulate.DefaultOrderReplies[types[i]].Done {
		return "done"
	}
	return "failed"
}

// sagaChaosDump is a saga's entries in short: do:<step>, undo:<step> or
// the outcome.
func sagaChaosDump(es []sagaEntry) string {
	out := make([]string, len(es))
	for i, e := range es {
		switch {
		case e.kind == "saga":
			out[i] = e.data.Outcome
		case e.data.Compensation:
			out[i] = "undo:" + e.data.Step
		default:
			out[i] = "do:" + e.data.Step
		}
	}
	return strings.Join(out, " ")
}
