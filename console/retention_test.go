package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/processor"
)

// The overview shows each stream under retention: its policy, length,
// oldest entry, and the group holding its cap back, abandoned or not; it
// trims nothing.
func TestOverviewShowsRetention(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	ctx := context.Background()
	for range 20 {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: "{pay:0}", Values: []string{"data", "{}"}})
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: "{pay:1}", Values: []string{"data", "{}"}})
	}
	// Partition 0: the pipeline's group read all and acked 17; the group
	// "audit" never read and has no consumer. Partition 1: all acked.
	for p, stream := range []string{"{pay:0}", "{pay:1}"} {
		rdb.XGroupCreate(ctx, stream, "pay", "0")
		res := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "pay", Consumer: "w1", Streams: []string{stream, ">"}, Count: 20}).Val()
		var ids []string
		for _, m := range res[0].Messages {
			ids = append(ids, m.ID)
		}
		if p == 0 {
			ids = ids[3:]
			rdb.XGroupCreate(ctx, stream, "audit", "0")
		}
		rdb.XAck(ctx, stream, "pay", ids...)
	}
	in, err := processor.NewInspector(rdb, processor.Options{Pipeline: "pay", Stream: "pay", Partitions: 2,
		InputRetention: processor.Retention{MaxLen: 5, AbandonedAfter: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Pipelines: []Pipeline{{Name: "pay", Inspector: in}}})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	body := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("GET / = %d %s", w.Code, body)
	}
	row := func(stream string) string {
		i := strings.Index(body, `data-stream="`+stream+`"`)
		if i < 0 {
			t.Fatalf("no retention row for %s:\n%s", stream, body)
		}
		j := strings.Index(body[i:], "</tr>")
		return body[i : i+j]
	}
	for _, c := range []struct{ stream, want string }{
		{"{pay:0}", `<td class="length">20</td>`},
		{"{pay:0}", `group <code>audit</code> from <code>0-1</code> <strong class="abandoned">abandoned</strong> (no consumer)`},
		{"{pay:0}", `<td class="over">15</td>`},
		{"{pay:1}", `<td class="held-by">-</td>`},
		{"{pay:1}", `<td class="length">20</td>`}, // a status trims nothing
	} {
		if r := row(c.stream); !strings.Contains(r, c.want) {
			t.Errorf("retention row of %s does not show %s:\n%s", c.stream, c.want, r)
		}
	}
	if n := rdb.XLen(ctx, "{pay:1}").Val(); n != 20 {
		t.Errorf("the overview trimmed {pay:1} to %d", n)
	}
}

// With Current set, the overview and the pending page show the version
// readers read now: its group's partitions, and the version.
func TestOverviewShowsCurrentVersion(t *testing.T) {
	var v2 *processor.Inspector
	f := newFixture(t, "", func(o *Options) {
		o.Pipelines[0].Current = func(context.Context) (*processor.Inspector, int, error) { return v2, 2, nil }
	})
	var err error
	if v2, err = processor.NewInspector(f.rdb, processor.Options{Pipeline: "pay", Stream: "pay", Partitions: 2, Group: "pay:v2"}); err != nil {
		t.Fatal(err)
	}
	f.rdb.XAdd(f.ctx, &redis.XAddArgs{Stream: "{pay:1}", Values: []string{"data", "{}"}})
	f.rdb.XGroupCreate(f.ctx, "{pay:1}", "pay:v2", "0")
	f.rdb.XReadGroup(f.ctx, &redis.XReadGroupArgs{Group: "pay:v2", Consumer: "rebuilder", Streams: []string{"{pay:1}", ">"}, Count: 1})
	body := f.get("/").Body.String()
	for _, want := range []string{`group <code>pay:v2</code>`, `read model version <span class="version">2</span>`, `<span class="pending-total">1</span>`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / does not show %s:\n%s", want, body)
		}
	}
	if body := f.get("/pipelines/pay/pending").Body.String(); !strings.Contains(body, "rebuilder") {
		t.Errorf("the pending page does not show version 2's pending entry:\n%s", body)
	}
}
