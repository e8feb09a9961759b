package console

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/processor"
)

func TestOverviewPage(t *testing.T) {
	f := newFixture(t, "")
	for i := 0; i < 3; i++ {
		f.rdb.XAdd(f.ctx, &redis.XAddArgs{Stream: "{pay:1}", Values: []string{"data", "{}"}})
	}
	f.rdb.XGroupCreateMkStream(f.ctx, "{pay:1}", "pay", "0")
	f.rdb.XReadGroup(f.ctx, &redis.XReadGroupArgs{Group: "pay", Consumer: "w1", Streams: []string{"{pay:1}", ">"}, Count: 2})
	f.rdb.HSet(f.ctx, processor.GaugesKey("pay", 0, 2, "pay"), "open:per_minute", 4)
	f.rdb.HSet(f.ctx, processor.GaugesKey("pay", 1, 2, "pay"), "open:per_minute", 3)
	f.addDL("invalid", "a", time.Now())

	w := f.get("/")
	body := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("GET / = %d %s", w.Code, body)
	}
	for _, want := range []string{
		`data-pipeline="pay"`,
		`<span class="pending-total">2</span>`, // over both partitions
		`<span class="dl-total">1</span>`,
		`<td class="length">3</td>`,
		`<td class="lag">0 (no group yet)</td>`, // partition 0: no entries, no group
		`<td class="pending">2</td>`,
		`data-step="per_minute"><td>per_minute</td><td class="open-count">7</td><td>4, 3</td>`,
		`read-only`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / does not show %s:\n%s", want, body)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q, want default-src 'none'", csp)
	}
	if w := f.get("/nope"); w.Code != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", w.Code)
	}
	if w := f.get("/pipelines/other/dead-letters"); w.Code != http.StatusNotFound {
		t.Errorf("GET an unknown pipeline = %d, want 404", w.Code)
	}
	if w := f.get("/console/static/console.css"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "body") {
		t.Errorf("GET the style sheet = %d", w.Code)
	}
}

func TestPendingPage(t *testing.T) {
	f := newFixture(t, "")
	var ids []string
	for i := 0; i < 4; i++ {
		ids = append(ids, f.rdb.XAdd(f.ctx, &redis.XAddArgs{Stream: "{pay:0}", Values: []string{"data", "{}"}}).Val())
	}
	f.rdb.XGroupCreateMkStream(f.ctx, "{pay:0}", "pay", "0")
	f.rdb.XReadGroup(f.ctx, &redis.XReadGroupArgs{Group: "pay", Consumer: "w1", Streams: []string{"{pay:0}", ">"}, Count: 3})
	// A second delivery of the oldest: two deliveries.
	f.rdb.XClaim(f.ctx, &redis.XClaimArgs{Stream: "{pay:0}", Group: "pay", Consumer: "w2", Messages: ids[:1]})

	tests := []struct {
		query string
		want  []string
		more  bool
	}{
		{"", ids[:3], false},
		{"?count=2", ids[:2], true},
	}
	for _, tt := range tests {
		w := f.get("/pipelines/pay/pending" + tt.query)
		body := w.Body.String()
		if w.Code != http.StatusOK {
			t.Fatalf("GET pending%s = %d %s", tt.query, w.Code, body)
		}
		var got []string
		for _, m := range pendingIDRE.FindAllStringSubmatch(body, -1) {
			got = append(got, m[1])
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("GET pending%s lists %v, want %v", tt.query, got, tt.want)
		}
		if strings.Contains(body, `class="more"`) != tt.more {
			t.Errorf("GET pending%s: says there are more = %v, want %v", tt.query, !tt.more, tt.more)
		}
		if !strings.Contains(body, `<td>w2</td><td class="idle">`) || !strings.Contains(body, `<td class="deliveries">2</td>`) {
			t.Errorf("GET pending%s does not show the claimed entry's consumer w2 and its 2 deliveries:\n%s", tt.query, body)
		}
	}
	if w := f.get("/pipelines/pay/pending?count=0"); w.Code != http.StatusBadRequest {
		t.Errorf("GET pending?count=0 = %d, want 400", w.Code)
	}
	if w := f.get("/pipelines/pay/pending?count=501"); w.Code != http.StatusBadRequest {
		t.Errorf("GET pending?count=501 = %d, want 400", w.Code)
	}
}

func TestDeadLettersPageFilters(t *testing.T) {
	f := newFixture(t, "")
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a1 := f.addDL("invalid", "alice", t0)
	b1 := f.addDL("not_json", "bob", t0.Add(time.Minute))
	a2 := f.addDL("invalid", "bob", t0.Add(2*time.Minute))
	f.addDLOf("other", "invalid", "alice", t0) // another pipeline's, in the same stream
	b2 := f.addDL("max_attempts", "alice", t0.Add(3*time.Minute))

	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{a1, b1, a2, b2}},
		{"reason=invalid", []string{a1, a2}},
		{"key=alice", []string{a1, b2}},
		{"reason=invalid&key=bob", []string{a2}},
		{"from=2026-03-01T12:01", []string{b1, a2, b2}},
		{"to=2026-03-01T12:02:00", []string{a1, b1}},
		{"from=2026-03-01T12:01:00Z&to=2026-03-01T12:03:00Z", []string{b1, a2}},
		{"reason=nope", nil},
		{"count=2", []string{a1, b1}},
		{"count=2&after=" + b1, []string{a2, b2}},
		{"reason=invalid&count=1&after=" + a1, []string{a2}},
	}
	for _, tt := range tests {
		w := f.get("/pipelines/pay/dead-letters?" + tt.query)
		if w.Code != http.StatusOK {
			t.Fatalf("GET dead-letters?%s = %d %s", tt.query, w.Code, w.Body)
		}
		if got := shownDeadLetters(w.Body.String()); !slices.Equal(got, tt.want) {
			t.Errorf("GET dead-letters?%s shows %v, want %v", tt.query, got, tt.want)
		}
	}
	// The next-page link keeps the filter.
	body := f.get("/pipelines/pay/dead-letters?reason=invalid&count=1").Body.String()
	if want := `href="/pipelines/pay/dead-letters?after=` + a1 + `&amp;count=1&amp;reason=invalid"`; !strings.Contains(body, want) {
		t.Errorf("first page of one has no next link %s:\n%s", want, body)
	}
	for _, q := range []string{"from=yesterday", "from=2026-03-01T12:02&to=2026-03-01T12:01", "after=x", "count=9999"} {
		if w := f.get("/pipelines/pay/dead-letters?" + q); w.Code != http.StatusBadRequest {
			t.Errorf("GET dead-letters?%s = %d, want 400", q, w.Code)
		}
	}
}

func TestDeadLetterShowsFieldsAndErrorEscaped(t *testing.T) {
	f := newFixture(t, "")
	id := f.addDL("invalid", `<b>k</b>`, time.Now(), "data", `{"note":"<script>alert(1)</script>"}`, "source", "web")
	body := f.get("/pipelines/pay/dead-letters").Body.String()
	for _, want := range []string{
		`data-id="` + id + `"`,
		`<span class="reason">invalid</span>`,
		`<pre class="error-text">invalid failed</pre>`,
		`<td><code>data</code></td><td><pre>{&#34;note&#34;:&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;}</pre></td>`,
		`<td><code>source</code></td><td><pre>web</pre></td>`,
		`<dd class="key">&lt;b&gt;k&lt;/b&gt;</dd>`,
		`<code>{pay:0}</code> entry <code>1-1</code>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("dead-letter page does not show %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "<b>k") {
		t.Errorf("dead-letter page shows a field unescaped:\n%s", body)
	}
}

func TestParseFilter(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		query   string
		want    Filter
		wantErr bool
	}{
		{"", Filter{}, false},
		{"reason=+invalid+&key=a", Filter{Reason: "invalid", Key: "a"}, false},
		{"from=2026-03-01T12:00", Filter{From: t0}, false},
		{"from=2026-03-01T13:00:00%2B01:00", Filter{From: t0}, false},
		{"to=2026-03-01T12:00:00.000", Filter{To: t0}, false},
		{"from=tomorrow", Filter{}, true},
		{"from=2026-03-01T12:00&to=2026-03-01T12:00", Filter{}, true},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		got, err := ParseFilter(q)
		if (err != nil) != tt.wantErr || !got.From.Equal(tt.want.From) || !got.To.Equal(tt.want.To) || got.Reason != tt.want.Reason || got.Key != tt.want.Key {
			t.Errorf("ParseFilter(%s) = %+v, %v, want %+v (error %v)", tt.query, got, err, tt.want, tt.wantErr)
		}
		if err == nil {
			back, _ := ParseFilter(got.Values())
			if !back.From.Equal(got.From) || !back.To.Equal(got.To) || back.Reason != got.Reason || back.Key != got.Key {
				t.Errorf("ParseFilter(%s).Values() reads back as %+v, want %+v", tt.query, back, got)
			}
		}
	}
}

func TestIDBefore(t *testing.T) {
	tests := []struct{ id, want string }{
		{"5-3", "5-2"},
		{"5-0", "4-18446744073709551615"},
		{"0-1", "0-0"},
		{"0-0", ""},
	}
	for _, tt := range tests {
		if got := idBefore(tt.id); got != tt.want {
			t.Errorf("idBefore(%s) = %s, want %s", tt.id, got, tt.want)
		}
	}
}

func TestNewChecksOptions(t *testing.T) {
	f := newFixture(t, "")
	in := f.srv.o.Pipelines[0].Inspector
	tests := []struct {
		name string
		o    Options
	}{
		{"no pipelines", Options{}},
		{"no inspector", Options{Pipelines: []Pipeline{{Name: "x"}}}},
		{"twice", Options{Pipelines: []Pipeline{{Name: "x", Inspector: in}, {Name: "x", Inspector: in}}}},
		{"page size", Options{Pipelines: []Pipeline{{Name: "x", Inspector: in}}, PageSize: MaxPageSize + 1}},
		{"max scan", Options{Pipelines: []Pipeline{{Name: "x", Inspector: in}}, MaxScan: -1}},
	}
	for _, tt := range tests {
		if _, err := New(tt.o); err == nil {
			t.Errorf("New(%s) = nil error, want one", tt.name)
		}
	}
	if _, err := New(Options{Pipelines: []Pipeline{{Name: "x", Inspector: in}}}); err != nil {
		t.Errorf("New(one pipeline) = %v", err)
	}
}

// The scan is bounded: a page of a filter that matches nothing among many
// entries stops after MaxScan entries and offers to go on from there.
func TestDeadLettersScanIsBounded(t *testing.T) {
	f := newFixture(t, "", func(o *Options) { o.MaxScan = 3 })
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, f.addDL("invalid", "k"+strconv.Itoa(i), time.Now()))
	}
	body := f.get("/pipelines/pay/dead-letters?reason=none").Body.String()
	if !strings.Contains(body, `class="capped"`) || !strings.Contains(body, "after="+ids[2]) {
		t.Errorf("a scan past MaxScan does not stop at entry 3 with a next link after %s:\n%s", ids[2], body)
	}
	if got := shownDeadLetters(f.get("/pipelines/pay/dead-letters?count=10").Body.String()); !slices.Equal(got, ids[:3]) {
		t.Errorf("page of 10 with MaxScan 3 shows %v, want %v", got, ids[:3])
	}
}
