package console

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Several POSTs of one confirmation form at once (a double click, two
// tabs) act once: one 200, the others 409; and two operators' forms of the
// same dead letters, from two dry runs, replay each dead letter once, the
// second finding them missing.
func TestConsoleReplayOnce(t *testing.T) {
	f := newFixture(t, testToken)
	f.login(testToken)
	now := time.Now()
	for _, k := range []string{"a", "b", "c"} {
		f.addDL("invalid", k, now)
	}
	_, ids, sig := f.dryRun("action=replay")
	_, ids2, sig2 := f.dryRun("action=replay")
	if ids != ids2 || sig == sig2 {
		t.Fatalf("two dry runs: ids %q and %q, sigs equal %v; want the same ids, two forms", ids, ids2, sig == sig2)
	}
	const posts = 6
	codes := make([]int, posts)
	var wg sync.WaitGroup
	for i := range posts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = f.post("/pipelines/pay/dead-letters/replay", url.Values{"ids": {ids}, "sig": {sig}, "confirm": {"3"}}).Code
		}()
	}
	wg.Wait()
	ok, conflict := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusConflict:
			conflict++
		}
	}
	if ok != 1 || conflict != posts-1 {
		t.Errorf("%d POSTs of one form = %v, want one 200 and %d 409", posts, codes, posts-1)
	}
	w := f.post("/pipelines/pay/dead-letters/replay", url.Values{"ids": {ids2}, "sig": {sig2}, "confirm": {"3"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `id="missing"`) {
		t.Errorf("the other operator's form = %d, want 200 with the dead letters missing:\n%s", w.Code, w.Body)
	}
	if n := f.rdb.XLen(f.ctx, "{pay:0}").Val() + f.rdb.XLen(f.ctx, "{pay:1}").Val(); n != 3 {
		t.Errorf("entries replayed = %d, want 3 (each dead letter once)", n)
	}
	if got := f.dlqIDs(); len(got) != 0 {
		t.Errorf("dead letters left = %v, want none", got)
	}
}

// A form older than FormTTL is refused, and does nothing.
func TestConsoleFormExpires(t *testing.T) {
	now := time.Now()
	clock := now
	f := newFixture(t, testToken, func(o *Options) { o.Now = func() time.Time { return clock } })
	f.login(testToken)
	f.addDL("invalid", "a", now)
	_, ids, sig := f.dryRun("action=replay")
	clock = now.Add(FormTTL + time.Second)
	f.login(testToken) // the session is fresh; only the form is old
	if w := f.post("/pipelines/pay/dead-letters/replay", url.Values{"ids": {ids}, "sig": {sig}, "confirm": {"1"}}); w.Code != http.StatusBadRequest || len(f.dlqIDs()) != 1 {
		t.Errorf("replay with a form %v old = %d, dead letters %v; want 400 and nothing done", FormTTL+time.Second, w.Code, f.dlqIDs())
	}
}
