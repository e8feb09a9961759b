package simulate

import (
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Clickstream event types, in the order of a typical shopping session.
const (
	TypeView      = "view"
	TypeClick     = "click"
	TypeAddToCart = "add_to_cart"
	TypePurchase  = "purchase"
)

// NewClickstream returns a generator of users browsing a shop:
//
//	{"event_id":"c-1-0","user_id":"u42","session_id":"s-1-0","type":"view",
//	 "page":"/product/123","ts":1700000000000,"ua":"Mozilla/5.0 (…)"}
//
// event_id is unique ("c-<seed>-<n>") except in duplicates; user_id
// ("u<k>", k < Keys) is the key. Each user browses in sessions of 2 to 31
// events (session_id) that start with a view; a session is a journey
// (Options.Buyers, Options.Carts): a buyer's goes view, ..., add_to_cart,
// ..., purchase (its last event), a cart-leaver's has one add_to_cart and
// no purchase, the others only view and click (about 70% views); a
// purchase alone carries amount (a price in currency units, two decimals).
// After a session the user may pause (Options.Pauses) before the next.
// ts is unix milliseconds (some out of order or late: Options.Disorder,
// Options.Late).
func NewClickstream(opts Options) Generator {
	opts = opts.withDefaults()
	return newGenerator(&clickstream{seed: opts.Seed, users: make([]user, opts.Keys), opts: opts}, opts, 0xc11c)
}

type clickstream struct {
	seed     uint64
	users    []user
	sessions uint64 // sessions started so far
	opts     Options
}

// user is one shopper's session state.
type user struct {
	session uint64 // session number + 1; 0 before the first
	length  int    // events in the session
	next    int    // index of the session's next event; length when it has ended
	cartAt  int    // index of its add_to_cart; -1 for none
	buys    bool   // its last event is a purchase
	product int    // product last looked at
}

var userAgents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
	"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
	"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
}

var categories = []string{"books", "garden", "kitchen", "shoes", "toys", "electronics"}

const products = 5000

func (c *clickstream) keys() int { return len(c.users) }

// away implements source: a pause after a session's last event.
func (c *clickstream) away(r *rand.Rand, k int) time.Duration {
	if c.opts.Pauses <= 0 || c.users[k].next < c.users[k].length || r.Float64() >= c.opts.Pauses {
		return 0
	}
	return c.opts.Pause + time.Duration(r.Float64()*float64(c.opts.Pause))
}

// start begins user u's next session: its length and its journey.
func (c *clickstream) start(r *rand.Rand, u *user) {
	c.sessions++
	u.session = c.sessions
	u.length, u.next = 2+r.IntN(30), 0
	u.product = 1 + r.IntN(products)
	u.cartAt, u.buys = -1, false
	switch p := r.Float64(); {
	case p < c.opts.Buyers:
		u.length = max(u.length, 3)
		u.cartAt, u.buys = 1+r.IntN(u.length-2), true
	case p < c.opts.Buyers+c.opts.Carts:
		u.cartAt = 1 + r.IntN(u.length-1)
	}
}

func (c *clickstream) fresh(r *rand.Rand, n uint64, k int, ts int64, keyless bool) ([]byte, string) {
	u := &c.users[k]
	if u.next >= u.length {
		c.start(r, u)
	}
	i := u.next
	u.next++

	typ, page := TypeView, ""
	switch {
	case i == 0:
	case i == u.cartAt:
		typ = TypeAddToCart
	case u.buys && i == u.length-1:
		typ = TypePurchase
	case r.IntN(100) >= 70:
		typ = TypeClick
	}
	switch typ {
	case TypeView:
		switch p := r.IntN(10); {
		case p == 0:
			page = "/"
		case p < 3:
			page = "/category/" + categories[r.IntN(len(categories))]
		default:
			u.product = 1 + r.IntN(products)
			page = "/product/" + strconv.Itoa(u.product)
		}
	case TypeClick:
		page = "/product/" + strconv.Itoa(u.product)
	case TypeAddToCart:
		page = "/cart"
	case TypePurchase:
		page = "/checkout"
	}

	key := "u" + strconv.Itoa(k)
	b := make([]byte, 0, 256)
	b = append(b, '{')
	b = appendStringField(b, "event_id", id("c", c.seed, n))
	if !keyless {
		b = appendStringField(b, "user_id", key)
	}
	b = appendStringField(b, "session_id", id("s", c.seed, u.session-1))
	b = appendStringField(b, "type", typ)
	b = appendStringField(b, "page", page)
	if typ == TypePurchase {
		// Mostly small baskets, a long tail of large ones.
		amount := math.Round((4.99+r.ExpFloat64()*45)*100) / 100
		b = appendFixedField(b, "amount", amount)
	}
	b = appendIntField(b, "ts", ts)
	b = appendStringField(b, "ua", userAgents[k%len(userAgents)])
	b = append(b, '}')
	if keyless {
		key = ""
	}
	return b, key
}
