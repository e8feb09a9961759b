package console

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Login attempts per remote address: loginBurst at once, then one every
// loginEvery; more are answered 429.
const (
	loginBurst = 5
	loginEvery = 12 * time.Second
	// maxLoginAddrs bounds the addresses remembered; past it, those whose
	// budget is full again are forgotten, and if that is not enough, all.
	maxLoginAddrs = 10_000
)

// loginLimiter limits login attempts per remote address.
type loginLimiter struct {
	mu sync.Mutex
	by map[string]*rate.Limiter
}

// allow reports whether host may try to log in at now, counting the try.
func (l *loginLimiter) allow(host string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil {
		l.by = map[string]*rate.Limiter{}
	}
	lim := l.by[host]
	if lim == nil {
		if len(l.by) >= maxLoginAddrs {
			for h, x := range l.by {
				if x.TokensAt(now) >= loginBurst {
					delete(l.by, h)
				}
			}
			if len(l.by) >= maxLoginAddrs {
				clear(l.by)
			}
		}
		lim = rate.NewLimiter(rate.Every(loginEvery), loginBurst)
		l.by[host] = lim
	}
	return lim.AllowN(now, 1)
}

// remoteHost is the request's remote address without its port.
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}
