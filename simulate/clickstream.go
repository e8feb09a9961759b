package simulate

import (
	"math"
	"math/rand/v2"
	"strconv"
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
// ("u<k>", k < Keys) is the key. Each user browses in sessions of a few to
// a few dozen events that start with a view; about 60% of events are views,
// 25% clicks, 10% add_to_cart and 5% purchases, which alone carry amount
// (a price in currency units, two decimals). ts is unix milliseconds.
func NewClickstream(opts Options) Generator {
	opts = opts.withDefaults()
	return newGenerator(&clickstream{seed: opts.Seed, users: make([]user, opts.Keys)}, opts, 0xc11c)
}

type clickstream struct {
	seed     uint64
	users    []user
	sessions uint64 // sessions started so far
}

// user is one shopper's session state.
type user struct {
	session uint64 // session number + 1; 0 before the first
	left    int    // events left in the session
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

func (c *clickstream) fresh(r *rand.Rand, n uint64, k int, ts int64, keyless bool) ([]byte, string) {
	u := &c.users[k]
	first := u.left == 0
	if first {
		c.sessions++
		u.session = c.sessions
		u.left = 2 + r.IntN(30)
		u.product = 1 + r.IntN(products)
	}
	u.left--

	typ, page := TypeView, ""
	if !first {
		switch p := r.IntN(100); {
		case p < 60:
			typ = TypeView
		case p < 85:
			typ = TypeClick
		case p < 95:
			typ = TypeAddToCart
		default:
			typ = TypePurchase
		}
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
