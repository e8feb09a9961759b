package simulate

import (
	"bytes"
	"math"
	"testing"
	"time"
)

// Tests of the analytics options: what the window, session, funnel,
// threshold and absence steps of configs/demo.yaml need from the load.

// stamped is a generated event with the clock's time when it was made (a
// steppingClock: event i at epoch + i*step) and its decoded fields.
type stamped struct {
	generated
	at time.Time
	m  map[string]any
}

func takeStamped(tb testing.TB, g Generator, n int, step time.Duration) []stamped {
	tb.Helper()
	out := make([]stamped, n)
	for i, e := range take(tb, g, n) {
		out[i] = stamped{generated: e, at: epoch.Add(time.Duration(i) * step), m: decode(tb, e.event)}
	}
	return out
}

func tsOf(m map[string]any) time.Time { return time.UnixMilli(int64(m["ts"].(float64))) }

// TestPausesEndSessions: a user who pauses does so after a session's last
// event, for Pause to twice Pause, and never within a session.
func TestPausesEndSessions(t *testing.T) {
	t.Parallel()
	const n, keys, step = 100_000, 40, 2 * time.Millisecond // 500 events a second
	opts := Options{Seed: 5, Keys: keys, Disorder: -1, Late: -1, Now: steppingClock(step)}
	events := takeStamped(t, NewClickstream(opts), n, step)
	type last struct {
		at      time.Time
		session string
	}
	prev := map[string]last{}
	pauses, sessions := 0, 0
	for i, e := range events {
		s := e.m["session_id"].(string)
		if p, ok := prev[e.key]; ok {
			gap := e.at.Sub(p.at)
			if s != p.session {
				sessions++
			}
			if gap >= DefaultPause {
				pauses++
				if s == p.session {
					t.Fatalf("event %d: %s paused %v inside session %s, want pauses between sessions only", i, e.key, gap, s)
				}
				if gap > 2*DefaultPause+time.Second {
					t.Errorf("event %d: %s paused %v, want at most twice %v and a draw", i, e.key, gap, DefaultPause)
				}
			}
		}
		prev[e.key] = last{e.at, s}
	}
	// Pauses follow DefaultPauses of session ends, but here (40 users at
	// 500 events a second) half the users are away most of the time and
	// the others' sessions end without one: about one pause for each user
	// who comes back, 20 users every 15s on average over 200s.
	if pauses < 150 || pauses > sessions {
		t.Errorf("%d pauses after %d sessions, want at least 150", pauses, sessions)
	}
	again := takeStamped(t, NewClickstream(Options{Seed: 5, Keys: keys, Disorder: -1, Late: -1, Now: steppingClock(step)}), n, step)
	for i := range events {
		if !bytes.Equal(events[i].event, again[i].event) {
			t.Fatalf("event %d differs between two runs of seed 5: %s, %s", i, events[i].event, again[i].event)
		}
	}
	// Off: no user goes Pause without an event.
	opts = Options{Seed: 5, Keys: keys, Pauses: -1, Now: steppingClock(step)}
	at := map[string]time.Time{}
	for _, e := range takeStamped(t, NewClickstream(opts), n, step) {
		if p, ok := at[e.key]; ok && e.at.Sub(p) >= DefaultPause/2 {
			t.Fatalf("with Pauses -1, %s went %v without an event", e.key, e.at.Sub(p))
		}
		at[e.key] = e.at
	}
	t.Logf("%d pauses after %d sessions", pauses, sessions)
}

// TestJourneys: a buyer's session goes view, add_to_cart, purchase (its
// last event); a cart-leaver's has one add_to_cart and no purchase; the
// others neither; in the shares Buyers and Carts.
func TestJourneys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		buyers, carts float64
		wantBuy       float64
		wantCart      float64
	}{
		{"defaults", 0, 0, DefaultBuyers, DefaultCarts},
		{"all buy", 1, 0, 1, 0},
		{"none", -1, -1, 0, 0},
		{"carts lowered", 0.7, 0.6, 0.7, 0.3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := NewClickstream(Options{Seed: 6, Keys: 30, Buyers: tt.buyers, Carts: tt.carts, Now: fixedClock(epoch)})
			type journey struct{ types []string }
			open := map[string]*journey{} // by session_id
			var order []string
			for _, e := range take(t, g, 60_000) {
				m := decode(t, e.event)
				s := m["session_id"].(string)
				j := open[s]
				if j == nil {
					j = &journey{}
					open[s] = j
					order = append(order, s)
				}
				j.types = append(j.types, m["type"].(string))
			}
			buy, cart, done := 0, 0, 0
			// The last 100 sessions may not have ended.
			for _, s := range order[:len(order)-100] {
				ty := open[s].types
				done++
				if ty[0] != TypeView {
					t.Fatalf("session %s starts with %s, want a view", s, ty[0])
				}
				carts, purchases, cartAt := 0, 0, -1
				for i, x := range ty {
					switch x {
					case TypeAddToCart:
						carts++
						cartAt = i
					case TypePurchase:
						purchases++
						if i != len(ty)-1 || cartAt < 0 {
							t.Fatalf("session %s %v: a purchase not last or without an add_to_cart before it", s, ty)
						}
					}
				}
				switch {
				case carts > 1 || purchases > 1:
					t.Fatalf("session %s %v: want at most one add_to_cart and one purchase", s, ty)
				case purchases == 1:
					buy++
				case carts == 1:
					cart++
				}
			}
			if got := float64(buy) / float64(done); math.Abs(got-tt.wantBuy) > 0.04 {
				t.Errorf("%.3f of %d sessions bought, want %.2f", got, done, tt.wantBuy)
			}
			if got := float64(cart) / float64(done); math.Abs(got-tt.wantCart) > 0.04 {
				t.Errorf("%.3f of %d sessions left a cart, want %.2f", got, done, tt.wantCart)
			}
		})
	}
}

// TestFunnelsCompleteAndDrop: at the demo's rate, a view -> add_to_cart ->
// purchase funnel within 20s (configs/demo.yaml), computed here over the
// events, both completes and drops.
func TestFunnelsCompleteAndDrop(t *testing.T) {
	t.Parallel()
	const n, keys, step, within = 50_000, 200, 2 * time.Millisecond, 20 * time.Second
	events := takeStamped(t, NewClickstream(Options{Seed: 8, Keys: keys, Now: steppingClock(step)}), n, step)
	type funnel struct {
		start time.Time
		stage int
	}
	active := map[string]*funnel{}
	completed, dropped := 0, 0
	stageOf := map[string]int{TypeView: 0, TypeAddToCart: 1, TypePurchase: 2}
	for _, e := range events {
		ts := tsOf(e.m)
		f := active[e.key]
		if f != nil && !ts.Before(f.start.Add(within)) {
			dropped++
			delete(active, e.key)
			f = nil
		}
		st, ok := stageOf[e.m["type"].(string)]
		switch {
		case !ok:
		case f == nil && st == 0:
			active[e.key] = &funnel{start: ts}
		case f != nil && st == f.stage+1:
			f.stage = st
			if st == 2 {
				completed++
				delete(active, e.key)
			}
		}
	}
	if completed < 100 || dropped < 100 {
		t.Errorf("%d funnels completed and %d dropped in %d events, want at least 100 of each", completed, dropped, n)
	}
	t.Logf("%d completed, %d dropped", completed, dropped)
}

// TestOutages: a device goes quiet for Outage to twice Outage, about
// Outages of its readings; off with a negative Outages.
func TestOutages(t *testing.T) {
	t.Parallel()
	const n, keys, step = 100_000, 50, 5 * time.Millisecond // 200 readings a second
	count := func(opts Options) (outages int) {
		at := map[string]time.Time{}
		for i, e := range take(t, NewIoT(opts), n) {
			now := epoch.Add(time.Duration(i) * step)
			if p, ok := at[e.key]; ok {
				gap := now.Sub(p)
				if gap >= DefaultOutage {
					outages++
				}
				if gap > 2*DefaultOutage+2*time.Second {
					t.Fatalf("reading %d: %s went %v without a reading, want at most twice %v and a draw", i, e.key, gap, DefaultOutage)
				}
			}
			at[e.key] = now
		}
		return outages
	}
	if got := count(Options{Seed: 3, Keys: keys, Outages: -1, Now: steppingClock(step)}); got != 0 {
		t.Errorf("with Outages -1, %d gaps of %v or more, want 0", got, DefaultOutage)
	}
	// The readings of devices that are out do not come: about n *
	// DefaultOutages outages, a little fewer as some start late in the run.
	got := count(Options{Seed: 3, Keys: keys, Now: steppingClock(step)})
	if want := n * DefaultOutages; float64(got) < want/2 || float64(got) > want*1.3 {
		t.Errorf("%d outages in %d readings, want about %.0f", got, n, want)
	}
}

// TestAwayAtMostHalf: with every session ending in a pause and every
// reading in an outage, and a clock that does not move, half the keys stay
// in the draw.
func TestAwayAtMostHalf(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			const keys = 40
			seen := map[string]int{}
			for _, e := range take(t, k.new(Options{Seed: 2, Keys: keys, Pauses: 1, Outages: 1, Now: fixedClock(epoch)}), 20_000) {
				seen[e.key]++
			}
			if len(seen) < keys/2 {
				t.Errorf("%d keys drawn of %d, want at least half", len(seen), keys)
			}
			for key, c := range seen {
				if c > 20_000/(keys/2)*2 {
					t.Errorf("key %s drawn %d times in 20000, want about %d at most", key, c, 20_000/(keys/2))
				}
			}
		})
	}
}

// TestHeat: temperature devices heat past 30 celsius for longer than
// HeatFor and come back below 27, rising and falling gradually; other
// sensors and Heat -1 never go past 30.
func TestHeat(t *testing.T) {
	t.Parallel()
	const n, keys, step = 200_000, 30, 5 * time.Millisecond
	run := func(opts Options) (episodes int) {
		type dev struct {
			hotSince time.Time
			hot      bool
			last     float64
			seen     bool
		}
		devs := map[string]*dev{}
		for i, e := range take(t, NewIoT(opts), n) {
			m := decode(t, e.event)
			v, ts := m["value"].(float64), tsOf(m)
			d := devs[e.key]
			if d == nil {
				d = &dev{}
				devs[e.key] = d
			}
			if d.seen && math.Abs(v-d.last) > 5 {
				t.Fatalf("reading %d: %s jumped from %v to %v", i, e.key, d.last, v)
			}
			d.last, d.seen = v, true
			if m["sensor"] != SensorTemperature {
				continue
			}
			switch {
			case !d.hot && v > 30:
				d.hot, d.hotSince = true, ts
			case d.hot && v < 27:
				d.hot = false
				episodes++
				if hot := ts.Sub(d.hotSince); hot < DefaultHeatFor {
					t.Errorf("reading %d: %s was over 30 for %v, want at least %v", i, e.key, hot, DefaultHeatFor)
				}
			}
		}
		return episodes
	}
	if got := run(Options{Seed: 4, Keys: keys, Heat: -1, Disorder: -1, Late: -1, Now: steppingClock(step)}); got != 0 {
		t.Errorf("with Heat -1, %d heat episodes, want 0", got)
	}
	if got := run(Options{Seed: 4, Keys: keys, Disorder: -1, Late: -1, Outages: -1, Now: steppingClock(step)}); got < 3 {
		t.Errorf("%d heat episodes over and back in %v of readings, want at least 3", got, n*step)
	}
}

// TestDisorderAndLate: Disorder of the events lie up to DisorderBy before
// the clock, Late of them LateBy to twice LateBy; the others at it.
func TestDisorderAndLate(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			const n, step = 100_000, time.Millisecond
			ooo, late := 0, 0
			for i, e := range takeStamped(t, k.new(Options{Seed: 7, Keys: 100, Now: steppingClock(step)}), n, step) {
				switch behind := e.at.Sub(tsOf(e.m)); {
				case behind == 0:
				case behind > 0 && behind <= DefaultDisorderBy:
					ooo++
				case behind >= DefaultLateBy && behind <= 2*DefaultLateBy:
					late++
				default:
					t.Fatalf("event %d: ts %v behind the clock, want 0, up to %v, or %v to %v", i, behind, DefaultDisorderBy, DefaultLateBy, 2*DefaultLateBy)
				}
			}
			if got := float64(ooo) / n; math.Abs(got-DefaultDisorder) > 0.003 {
				t.Errorf("%.4f of events out of order, want %v", got, DefaultDisorder)
			}
			if got := float64(late) / n; math.Abs(got-DefaultLate) > 0.001 {
				t.Errorf("%.4f of events late, want %v", got, DefaultLate)
			}
			for _, e := range takeStamped(t, k.new(Options{Seed: 7, Keys: 100, Disorder: -1, Late: -1, Now: steppingClock(step)}), 5000, step) {
				if !tsOf(e.m).Equal(e.at) {
					t.Fatalf("with Disorder and Late -1, ts %v at clock %v", tsOf(e.m), e.at)
				}
			}
		})
	}
}

func TestAnalyticsOptionsDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Options
		want Options
	}{
		{"zero: defaults", Options{}, Options{
			Pauses: DefaultPauses, Pause: DefaultPause, Buyers: DefaultBuyers, Carts: DefaultCarts,
			Outages: DefaultOutages, Outage: DefaultOutage, Heat: DefaultHeat, HeatFor: DefaultHeatFor, HeatRise: DefaultHeatRise,
			Disorder: DefaultDisorder, DisorderBy: DefaultDisorderBy, Late: DefaultLate, LateBy: DefaultLateBy,
		}},
		{"negative: off, lengths defaulted", Options{
			Pauses: -1, Pause: -time.Second, Buyers: -1, Carts: -0.5, Outages: -1, Outage: -1, Heat: -1, HeatFor: -1, HeatRise: -3,
			Disorder: -1, DisorderBy: -1, Late: -1, LateBy: -1,
		}, Options{
			Pause: DefaultPause, Outage: DefaultOutage, HeatFor: DefaultHeatFor, HeatRise: DefaultHeatRise,
			DisorderBy: DefaultDisorderBy, LateBy: DefaultLateBy,
		}},
		{"set, shares bounded", Options{
			Pauses: 2, Pause: time.Minute, Buyers: 0.6, Carts: 0.6, Outages: 0.5, Outage: time.Hour, Heat: 0.1, HeatFor: time.Minute, HeatRise: 5,
			Disorder: 0.9, DisorderBy: 3 * time.Second, Late: 0.3, LateBy: time.Minute,
		}, Options{
			Pauses: 1, Pause: time.Minute, Buyers: 0.6, Carts: 0.4, Outages: 0.5, Outage: time.Hour, Heat: 0.1, HeatFor: time.Minute, HeatRise: 5,
			Disorder: 0.7, DisorderBy: 3 * time.Second, Late: 0.3, LateBy: time.Minute,
		}},
		{"NaN: defaults", Options{Pauses: math.NaN(), Heat: math.NaN(), HeatRise: math.NaN(), Late: math.NaN()}, Options{
			Pauses: DefaultPauses, Pause: DefaultPause, Buyers: DefaultBuyers, Carts: DefaultCarts,
			Outages: DefaultOutages, Outage: DefaultOutage, Heat: DefaultHeat, HeatFor: DefaultHeatFor, HeatRise: DefaultHeatRise,
			Disorder: DefaultDisorder, DisorderBy: DefaultDisorderBy, Late: DefaultLate, LateBy: DefaultLateBy,
		}},
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
	for _, tt := range tests {
		got, w := tt.in.withDefaults(), tt.want
		if !near(got.Pauses, w.Pauses) || got.Pause != w.Pause || !near(got.Buyers, w.Buyers) || !near(got.Carts, w.Carts) ||
			!near(got.Outages, w.Outages) || got.Outage != w.Outage || !near(got.Heat, w.Heat) || got.HeatFor != w.HeatFor ||
			!near(got.HeatRise, w.HeatRise) || !near(got.Disorder, w.Disorder) || got.DisorderBy != w.DisorderBy ||
			!near(got.Late, w.Late) || got.LateBy != w.LateBy {
			t.Errorf("%s: withDefaults() = pauses %v/%v buyers %v carts %v outages %v/%v heat %v/%v/%v disorder %v/%v late %v/%v; want %v/%v %v %v %v/%v %v/%v/%v %v/%v %v/%v",
				tt.name, got.Pauses, got.Pause, got.Buyers, got.Carts, got.Outages, got.Outage, got.Heat, got.HeatFor, got.HeatRise, got.Disorder, got.DisorderBy, got.Late, got.LateBy,
				w.Pauses, w.Pause, w.Buyers, w.Carts, w.Outages, w.Outage, w.Heat, w.HeatFor, w.HeatRise, w.Disorder, w.DisorderBy, w.Late, w.LateBy)
		}
	}
}
