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
