package console

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FormTTL is how long a dry run's confirmation form may be used: an older
// one is refused (do the dry run again). It is also how long the console
// remembers the nonce of a form used.
const FormTTL = time.Hour

// newNonce returns a fresh nonce for a confirmation form:
// "<issued unix ms>-<16 random bytes, hex>".
func (s *Server) newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24+)
	return strconv.FormatInt(s.o.Now().UnixMilli(), 10) + "-" + hex.EncodeToString(b)
}

// nonceTime returns the time a nonce was issued at.
func nonceTime(nonce string) (time.Time, bool) {
	ms, _, ok := strings.Cut(nonce, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}

// nonceSet remembers the nonces of the confirmation forms used, each until
// its form expires (FormTTL after it was issued), so that a form acts at
// most once: a second POST of it (a double click, a reload, another tab)
// is refused. It lives in the console's memory: consoles in several
// processes do not share it, but processor.Replay appends a dead letter
// only if it removed it, so that a replay from each still appends it once.
type nonceSet struct {
	mu   sync.Mutex
	used map[string]time.Time // nonce -> when it may be forgotten
}

// claim records nonce as used and reports whether it was not already.
// Expired nonces are forgotten on the way: their forms are refused anyway.
func (n *nonceSet) claim(nonce string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.used == nil {
		n.used = map[string]time.Time{}
	}
	for k, until := range n.used {
		if now.After(until) {
			delete(n.used, k)
		}
	}
	if _, dup := n.used[nonce]; dup {
		return false
	}
	issued, _ := nonceTime(nonce)
	n.used[nonce] = issued.Add(FormTTL + time.Minute)
	return true
}
