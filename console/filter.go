package console

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// Filter selects dead letters by reason, key and the time they failed. A
// zero field selects everything.
type Filter struct {
	// Reason and Key must equal the dead letter's when set.
	Reason, Key string
	// From and To bound the time the dead letter failed: From <= FailedAt
	// < To. Zero: unbounded.
	From, To time.Time
}

// Match reports whether f selects d.
func (f Filter) Match(d processor.DeadLetter) bool {
	switch {
	case f.Reason != "" && d.Reason != f.Reason:
		return false
	case f.Key != "" && d.Key != f.Key:
		return false
	case !f.From.IsZero() && d.FailedAt.Before(f.From):
		return false
	case !f.To.IsZero() && !d.FailedAt.Before(f.To):
		return false
	}
	return true
}

// IsZero reports whether f selects everything.
func (f Filter) IsZero() bool { return f == Filter{} }

// timeLayouts are the forms a filter's time takes: an HTML datetime-local
// input's (read as UTC) and RFC 3339.
var timeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02T15:04:05.000", time.RFC3339Nano}

// ParseFilter reads a Filter from the query values reason, key, from and
// to (times as RFC 3339, or 2006-01-02T15:04[:05] in UTC).
func ParseFilter(q url.Values) (Filter, error) {
	f := Filter{Reason: strings.TrimSpace(q.Get("reason")), Key: q.Get("key")}
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		v := strings.TrimSpace(q.Get(b.name))
		if v == "" {
			continue
		}
		var err error
		for _, layout := range timeLayouts {
			var t time.Time
			if t, err = time.ParseInLocation(layout, v, time.UTC); err == nil {
				*b.t = t
				break
			}
		}
		if err != nil {
			return Filter{}, fmt.Errorf("%s %q: want a time like 2006-01-02T15:04:05 (UTC) or RFC 3339", b.name, v)
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return Filter{}, fmt.Errorf("from %s is not before to %s", fmtTime(f.From), fmtTime(f.To))
	}
	return f, nil
}

// Values encodes f as the query values ParseFilter reads.
func (f Filter) Values() url.Values {
	q := url.Values{}
	if f.Reason != "" {
		q.Set("reason", f.Reason)
	}
	if f.Key != "" {
		q.Set("key", f.Key)
	}
	if !f.From.IsZero() {
		q.Set("from", f.From.UTC().Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		q.Set("to", f.To.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// String describes f for people.
func (f Filter) String() string {
	var parts []string
	if f.Reason != "" {
		parts = append(parts, "reason "+f.Reason)
	}
	if f.Key != "" {
		parts = append(parts, "key "+f.Key)
	}
	if !f.From.IsZero() {
		parts = append(parts, "from "+fmtTime(f.From))
	}
	if !f.To.IsZero() {
		parts = append(parts, "before "+fmtTime(f.To))
	}
	if len(parts) == 0 {
		return "all dead letters"
	}
	return strings.Join(parts, ", ")
}

// DeadLetterReader reads a pipeline's dead-letter stream, as
// processor.Inspector does.
type DeadLetterReader interface {
	DeadLetterSpan(ctx context.Context) (n int64, last string, err error)
	DeadLetters(ctx context.Context, after string, count int) (dls []processor.DeadLetter, last string, foreign []string, err error)
}

var _ DeadLetterReader = (*processor.Inspector)(nil)

// Scan is what ScanDeadLetters found.
type Scan struct {
	// Matched are the dead letters selected, oldest first.
	Matched []processor.DeadLetter
	// Examined counts the entries read.
	Examined int
	// Next is the id to continue after; "" once the scan reached the entry
	// that was last when it began.
	Next string
	// Capped is set when the scan stopped at its bound on entries read,
	// not at its limit of matches or at the end.
	Capped bool
	// Foreign are the ids of entries that are not Eddy's dead letters.
	Foreign []string
}

// scanPage is how many entries a scan reads per round trip.
const scanPage = 500

// ScanDeadLetters reads the dead letters of pipeline after id after (""
// for the first), oldest first, and returns those f selects. A dead letter
// written by another pipeline (one dead-letter stream shared by several)
// is passed over; one that names no pipeline is taken. It stops once it
// has limit matches, once it has read maxRead entries, or at the entry
// that was last when it began: a replayed event that fails again lands
// behind that and is not read again.
func ScanDeadLetters(ctx context.Context, r DeadLetterReader, pipeline string, f Filter, after string, limit, maxRead int) (Scan, error) {
	var sc Scan
	_, stop, err := r.DeadLetterSpan(ctx)
	if err != nil || stop == "" || (after != "" && !processor.IDAfter(stop, after)) {
		return sc, err
	}
	for {
		page, last, foreign, err := r.DeadLetters(ctx, after, min(scanPage, maxRead-sc.Examined))
		if err != nil {
			return sc, err
		}
		sc.Foreign = append(sc.Foreign, foreign...)
		sc.Examined += len(foreign)
		for _, d := range page {
			if processor.IDAfter(d.ID, stop) {
				return sc, nil
			}
			sc.Examined++
			if (d.Pipeline != "" && d.Pipeline != pipeline) || !f.Match(d) {
				continue
			}
			sc.Matched = append(sc.Matched, d)
			if len(sc.Matched) == limit {
				if d.ID != stop {
					sc.Next = d.ID
				}
				return sc, nil
			}
		}
		if last == "" || last == stop || processor.IDAfter(last, stop) {
			return sc, nil
		}
		after = last
		if sc.Examined >= maxRead {
			sc.Next, sc.Capped = last, true
			return sc, nil
		}
	}
}
