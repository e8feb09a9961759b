package simulate

import (
	"bytes"
	"math"
	"testing"
	"time"
)

// steppingClock returns a clock that moves on by step at every call: one
// call per event, so event i is stamped epoch + i*step.
func steppingClock(step time.Duration) func() time.Time {
	now := epoch
	return func() time.Time {
		t := now
		now = now.Add(step)
		return t
	}
}

// runs returns, for events, the lengths of the runs of consecutive events
// of one key.
func runs(events []generated) []int {
	var out []int
	for i := 0; i < len(events); {
		j := i + 1
		for j < len(events) && events[j].key == events[i].key {
			j++
		}
		out = append(out, j-i)
		i = j
	}
	return out
}

func TestBursts(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			const n, keys, size = 40_000, 50, 25
			steady := take(t, k.new(plain(Options{Seed: 4, Keys: keys, Now: fixedClock(epoch)})), n)
			bursty := take(t, k.new(plain(Options{Seed: 4, Keys: keys, Bursts: 0.005, BurstSize: size, Now: fixedClock(epoch)})), n)

			longest := func(rs []int) int {
				m := 0
				for _, r := range rs {
					m = max(m, r)
				}
				return m
			}
			if m := longest(runs(steady)); m >= 6 {
				t.Fatalf("without bursts the longest run of one key is %d events, want under 6 (draws are uniform over %d keys)", m, keys)
			}
			bursts, inBursts := 0, 0
			for _, r := range runs(bursty) {
				if r >= size {
					bursts++
					inBursts += r
				}
			}
			// A fresh event starts a burst with probability 0.005, and a
			// burst holds size events: about n / (1/0.005 + size) bursts.
			want := float64(n) / (1/0.005 + size)
			if math.Abs(float64(bursts)-want) > want/3 {
				t.Errorf("%d bursts of %d events or more in %d events, want about %.0f", bursts, size, n, want)
			}
			// A burst is fresh, well-formed events with ids in sequence.
			for i, e := range bursty {
				if !bytes.Contains(e.event, []byte(`"`+k.keyField+`":"`+e.key+`"`)) {
					t.Fatalf("event %d %s has no %s %q", i, e.event, k.keyField, e.key)
				}
			}
			ids := map[string]bool{}
			for _, e := range bursty {
				id := decode(t, e.event)[k.idField].(string)
				if ids[id] {
					t.Fatalf("id %s twice without duplicates asked for", id)
				}
				ids[id] = true
			}
			t.Logf("%d bursts holding %d of %d events", bursts, inBursts, n)
		})
	}
}

func TestSilences(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			const (
				n, keys = 60_000, 20
				step    = 10 * time.Millisecond // 100 events a second, 5 per key
				silence = 10 * time.Second
			)
			// gaps returns, per key, the gaps between its consecutive events.
			gaps := func(events []generated) map[string][]time.Duration {
				last := map[string]time.Duration{}
				out := map[string][]time.Duration{}
				for i, e := range events {
					at := time.Duration(i) * step
					if p, ok := last[e.key]; ok {
						out[e.key] = append(out[e.key], at-p)
					}
					last[e.key] = at
				}
				return out
			}
			still := take(t, k.new(plain(Options{Seed: 9, Keys: keys, Now: steppingClock(step)})), n)
			for key, gs := range gaps(still) {
				for _, g := range gs {
					if g >= silence/2 {
						t.Fatalf("without silences key %s went %v without an event, want under %v", key, g, silence/2)
					}
				}
			}

			opts := plain(Options{Seed: 9, Keys: keys, Silences: 0.002, Silence: silence, Now: steppingClock(step)})
			quiet := take(t, k.new(opts), n)
			silences := 0
			for key, gs := range gaps(quiet) {
				for _, g := range gs {
					// A silence lasts between half and one and a half times
					// Silence, plus the wait for the key's next draw.
					if g > silence*3/2+2*time.Second {
						t.Errorf("key %s went %v without an event, want at most %v and a draw", key, g, silence*3/2)
					}
					if g >= silence/2 {
						silences++
					}
				}
			}
			// Each fresh event silences its key with probability 0.002.
			want := 0.002 * n
			if math.Abs(float64(silences)-want) > want/3 {
				t.Errorf("%d silences in %d events, want about %.0f", silences, n, want)
			}

			// Silences are deterministic too: the same seed and clock give
			// the same events.
			again := take(t, k.new(plain(Options{Seed: 9, Keys: keys, Silences: 0.002, Silence: silence, Now: steppingClock(step)})), n)
			for i := range quiet {
				if !bytes.Equal(quiet[i].event, again[i].event) {
					t.Fatalf("event %d differs between two runs of seed 9: %s, %s", i, quiet[i].event, again[i].event)
				}
			}
		})
	}
}

// TestSilenceKeepsOneKey: with every event silencing its key, one key is
// always left to draw from, and keys come back when their silence ends.
func TestSilenceKeepsOneKey(t *testing.T) {
	t.Parallel()
	const keys = 5
	g := NewIoT(plain(Options{Seed: 1, Keys: keys, Silences: 1, Silence: time.Second, Now: steppingClock(100 * time.Millisecond)})).(*generator)
	seen := map[string]int{}
	for i := range 2000 {
		_, key := g.Next()
		seen[key]++
		silent := 0
		for k := range keys {
			if g.sched.silent(k) {
				silent++
			}
		}
		if silent > keys-1 {
			t.Fatalf("after event %d every key is silent", i)
		}
	}
	if len(seen) != keys {
		t.Errorf("keys seen %v, want all %d: a silence ends", seen, keys)
	}
}

func TestDrift(t *testing.T) {
	t.Parallel()
	const keys, perDevice = 30, 2000
	// spans returns, for the least and the most wandering device, how far
	// apart its lowest and highest readings were, in steps of its sensor's
	// walk.
	spans := func(drift float64) (lo, hi float64) {
		g := NewIoT(plain(Options{Seed: 2, Keys: keys, Drift: drift, Now: fixedClock(epoch)}))
		type span struct{ min, max, step float64 }
		devs := map[string]*span{}
		last := map[string]float64{}
		for range keys * perDevice {
			ev, key := g.Next()
			m := decode(t, ev)
			v := m["value"].(float64)
			if p, ok := last[key]; ok && math.Abs(v-p) > 5 {
				t.Fatalf("drift %v: %s jumped from %v to %v", drift, key, p, v)
			}
			last[key] = v
			s := devs[key]
			if s == nil {
				s = &span{min: v, max: v}
				for _, sm := range sensors {
					if sm.name == m["sensor"] {
						s.step = sm.step
					}
				}
				devs[key] = s
			}
			s.min, s.max = math.Min(s.min, v), math.Max(s.max, v)
		}
		lo = math.Inf(1)
		for _, s := range devs {
			d := (s.max - s.min) / s.step
			lo, hi = math.Min(lo, d), math.Max(hi, d)
		}
		return lo, hi
	}
	_, still := spans(0)
	drifting, _ := spans(0.5)
	// Without drift a device's readings walk back to the typical one: they
	// span its start and some steps around. With drift 0.5 each reading
	// moves its centre on by 0.25 to 0.75 steps, 500 to 1500 steps over
	// the run, turning at driftSpan spreads or the sensor's range.
	if still > 100 {
		t.Errorf("without drift a device's readings spanned %.0f steps, want at most 100", still)
	}
	if drifting < 150 {
		t.Errorf("with drift 0.5 the least wandering device's readings spanned %.0f steps, want at least 150", drifting)
	}
	t.Logf("readings spanned at most %.0f steps without drift; at least %.0f with drift 0.5", still, drifting)
}

func TestShapeOptionsDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in               Options
		bursts, silences float64
		burstSize        int
		silence          time.Duration
		drift            float64
	}{
		{Options{}, 0, 0, DefaultBurstSize, DefaultSilence, 0},
		{Options{Bursts: 2, Silences: -1, BurstSize: -3, Silence: -time.Second, Drift: math.NaN()}, 1, 0, DefaultBurstSize, DefaultSilence, 0},
		{Options{Bursts: 0.1, Silences: 0.2, BurstSize: 5, Silence: time.Minute, Drift: 0.5}, 0.1, 0.2, 5, time.Minute, 0.5},
		{Options{Drift: math.Inf(1)}, 0, 0, DefaultBurstSize, DefaultSilence, 0},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		if got.Bursts != tt.bursts || got.Silences != tt.silences || got.BurstSize != tt.burstSize || got.Silence != tt.silence || got.Drift != tt.drift {
			t.Errorf("%+v.withDefaults() = bursts %v, silences %v, burst size %d, silence %v, drift %v; want %v, %v, %d, %v, %v",
				tt.in, got.Bursts, got.Silences, got.BurstSize, got.Silence, got.Drift, tt.bursts, tt.silences, tt.burstSize, tt.silence, tt.drift)
		}
	}
}
