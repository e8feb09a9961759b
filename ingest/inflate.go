package ingest

import (
	"errors"
	"io"
	"sync"
	"time"
)

// MaxInflatingBytes is the HTTP source's budget of inflated bytes held at
// once: the buffers of every gzip body being inflated, or inflated and
// not yet answered, summed over the source's requests. Each request's
// inflation is capped by max_decompressed_bytes; this caps them together,
// so that many gzip bombs at once cost at most this much memory. A request
// whose buffer cannot grow within the budget is answered 503 with
// Retry-After InflateRetryAfter, naming the budget. The budget is never
// below max_decompressed_bytes + 1, so that one request at the limit
// always fits. Bodies sent without Content-Encoding are not counted: each
// is capped by max_body_bytes as it arrives.
const MaxInflatingBytes = 256 << 20

// InflateRetryAfter is advised with the 503 of a gzip body that did not
// fit in MaxInflatingBytes.
const InflateRetryAfter = time.Second

// firstBuffer is the first size of a body's buffer; it doubles from there
// up to its limit.
const firstBuffer = 64 << 10

// errOverBudget is a gzip body whose buffer could not grow within the
// source's inflate budget.
var errOverBudget = errors.New("over the inflate budget")

// inflateBudget is a source's budget of inflated bytes. It is safe for
// concurrent use.
type inflateBudget struct {
	mu    sync.Mutex
	limit int64
	held  int64
	peak  int64 // the most held at once, for tests
	users int   // leases holding bytes, for tests
}

func newInflateBudget(limit int64) *inflateBudget { return &inflateBudget{limit: limit} }

// lease holds a request's part of the budget; the zero lease of a nil
// budget holds nothing and takes anything.
type lease struct {
	b *inflateBudget
	n int64
}

// grow takes n more bytes of the budget for the request, or reports that
// they do not fit (and takes nothing).
func (l *lease) grow(n int64) bool {
	if l.b == nil {
		return true
	}
	b := l.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held+n > b.limit {
		return false
	}
	if l.n == 0 {
		b.users++
	}
	b.held += n
	l.n += n
	b.peak = max(b.peak, b.held)
	return true
}

// release gives back what the request holds. It may be called again.
func (l *lease) release() {
	if l.b == nil || l.n == 0 {
		return
	}
	b := l.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held -= l.n
	b.users--
	l.n = 0
}

// stats returns what is held now, the peak and how many requests hold.
func (b *inflateBudget) stats() (held, peak int64, users int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held, b.peak, b.users
}

// readLimited reads r to its end into a buffer that starts at firstBuffer
// and doubles, never past limit + 1 bytes: over reports that r has more
// than limit bytes (and b holds limit + 1 of them). Each growth of the
// buffer is first taken from l (nil: no budget); when it does not fit,
// readLimited returns errOverBudget.
func readLimited(r io.Reader, limit int64, l *lease) (b []byte, over bool, err error) {
	for {
		if len(b) == cap(b) {
			if int64(len(b)) > limit {
				return b, true, nil
			}
			size := min(max(2*int64(cap(b)), firstBuffer), limit+1)
			if l != nil && !l.grow(size-int64(cap(b))) {
				return nil, false, errOverBudget
			}
			nb := make([]byte, len(b), size)
			copy(nb, b)
			b = nb
		}
		n, rerr := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		switch {
		case errors.Is(rerr, io.EOF):
			return b, int64(len(b)) > limit, nil
		case rerr != nil:
			return b, false, rerr
		}
	}
}
