package simulate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// fixedClock returns a clock stopped at t.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

var epoch = time.UnixMilli(1_700_000_000_000)

// plain switches off the analytics options that move ts or take keys
// away (Pauses, Outages, Heat, Disorder, Late), for the tests of the
// other shapes.
func plain(o Options) Options {
	o.Pauses, o.Outages, o.Heat, o.Disorder, o.Late = -1, -1, -1, -1, -1
	return o
}

// kinds lists each generator with its key and id fields.
var kinds = []struct {
	name     string
	new      func(Options) Generator
	keyField string
	idField  string
}{
	{"clickstream", NewClickstream, "user_id", "event_id"},
	{"iot", NewIoT, "device_id", "reading_id"},
}

type generated struct {
	event []byte
	key   string
}

// take returns the next n events of g.
func take(tb testing.TB, g Generator, n int) []generated {
	tb.Helper()
	out := make([]generated, n)
	for i := range out {
		out[i].event, out[i].key = g.Next()
	}
	return out
}

// decode decodes a well-formed event, failing the test if it is not one.
func decode(tb testing.TB, ev []byte) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(ev, &m); err != nil {
		tb.Fatalf("json.Unmarshal(%q) = %v", ev, err)
	}
	return m
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			opts := Options{Seed: 7, Keys: 50, Duplicates: 0.1, Bad: 0.1, Now: fixedClock(epoch)}
			a := take(t, k.new(opts), 5000)
			b := take(t, k.new(opts), 5000)
			for i := range a {
				if !bytes.Equal(a[i].event, b[i].event) || a[i].key != b[i].key {
					t.Fatalf("event %d differs between two generators with seed 7:\n%q %q\n%q %q", i, a[i].event, a[i].key, b[i].event, b[i].key)
				}
			}
			opts.Seed = 8
			c := take(t, k.new(opts), 100)
			same := 0
			for i := range c {
				if bytes.Equal(a[i].event, c[i].event) {
					same++
				}
			}
			if same == len(c) {
				t.Errorf("seeds 7 and 8 give the same %d events", len(c))
			}
		})
	}
}

func TestClickstreamFields(t *testing.T) {
	t.Parallel()
	g := NewClickstream(plain(Options{Seed: 1, Keys: 20, Now: fixedClock(epoch)}))
	types := map[string]int{}
	for i, e := range take(t, g, 20000) {
		m := decode(t, e.event)
		for _, f := range []string{"event_id", "user_id", "session_id", "type", "page", "ua"} {
			if s, ok := m[f].(string); !ok || s == "" {
				t.Fatalf("event %d %s: field %q = %#v, want a non-empty string", i, e.event, f, m[f])
			}
		}
		if m["event_id"] != fmt.Sprintf("c-1-%d", i) {
			t.Fatalf("event %d: event_id = %v, want c-1-%d", i, m["event_id"], i)
		}
		if m["user_id"] != e.key || !strings.HasPrefix(e.key, "u") {
			t.Fatalf("event %d: key %q, user_id %v, want equal, u<k>", i, e.key, m["user_id"])
		}
		if ts, ok := m["ts"].(float64); !ok || int64(ts) != epoch.UnixMilli() {
			t.Fatalf("event %d: ts = %#v, want %d", i, m["ts"], epoch.UnixMilli())
		}
		typ := m["type"].(string)
		types[typ]++
		amount, hasAmount := m["amount"]
		if (typ == TypePurchase) != hasAmount {
			t.Fatalf("event %d %s: type %s with amount present %v, want amount exactly on purchases", i, e.event, typ, hasAmount)
		}
		if hasAmount {
			if a, ok := amount.(float64); !ok || a <= 0 {
				t.Fatalf("event %d: amount = %#v, want a positive number", i, amount)
			}
		}
		if page := m["page"].(string); !strings.HasPrefix(page, "/") {
			t.Fatalf("event %d: page = %q, want a path", i, page)
		}
	}
	// A realistic mix: mostly views, some of each, purchases the rarest.
	if len(types) != 4 || types[TypeView] < types[TypeClick] || types[TypeClick] < types[TypeAddToCart] || types[TypeAddToCart] < types[TypePurchase] || types[TypePurchase] == 0 {
		t.Errorf("type mix = %v, want view > click > add_to_cart > purchase > 0", types)
	}
}

func TestIoTFields(t *testing.T) {
	t.Parallel()
	g := NewIoT(plain(Options{Seed: 1, Keys: 30, Now: fixedClock(epoch)}))
	units := map[string]string{SensorTemperature: "celsius", SensorHumidity: "percent", SensorPressure: "hPa"}
	ranges := map[string][2]float64{SensorTemperature: {-40, 85}, SensorHumidity: {0, 100}, SensorPressure: {870, 1085}}
	sensorOf := map[string]string{}
	last := map[string]float64{}
	for i, e := range take(t, g, 30000) {
		m := decode(t, e.event)
		for _, f := range []string{"reading_id", "device_id", "sensor", "unit"} {
			if s, ok := m[f].(string); !ok || s == "" {
				t.Fatalf("event %d %s: field %q = %#v, want a non-empty string", i, e.event, f, m[f])
			}
		}
		if m["reading_id"] != fmt.Sprintf("r-1-%d", i) {
			t.Fatalf("event %d: reading_id = %v, want r-1-%d", i, m["reading_id"], i)
		}
		dev := m["device_id"].(string)
		if dev != e.key || !strings.HasPrefix(dev, "dev-") {
			t.Fatalf("event %d: key %q, device_id %q, want equal, dev-<k>", i, e.key, dev)
		}
		sensor := m["sensor"].(string)
		if units[sensor] == "" || m["unit"] != units[sensor] {
			t.Fatalf("event %d: sensor %q unit %v, want a known sensor with unit %q", i, sensor, m["unit"], units[sensor])
		}
		if prev, ok := sensorOf[dev]; ok && prev != sensor {
			t.Fatalf("event %d: device %s reports %s, earlier %s; want one sensor per device", i, dev, sensor, prev)
		}
		sensorOf[dev] = sensor
		v, ok := m["value"].(float64)
		if r := ranges[sensor]; !ok || v < r[0] || v > r[1] {
			t.Fatalf("event %d: %s value = %#v, want a number in %v", i, sensor, m["value"], r)
		}
		// A random walk: consecutive readings of a device are close.
		if p, ok := last[dev]; ok && math.Abs(v-p) > 5 {
			t.Fatalf("event %d: %s jumped from %v to %v", i, dev, p, v)
		}
		last[dev] = v
		if b, ok := m["battery"].(float64); !ok || b < 0 || b > 100 || b != math.Trunc(b) {
			t.Fatalf("event %d: battery = %#v, want a whole number in [0, 100]", i, m["battery"])
		}
		if ts, ok := m["ts"].(float64); !ok || int64(ts) != epoch.UnixMilli() {
			t.Fatalf("event %d: ts = %#v, want %d", i, m["ts"], epoch.UnixMilli())
		}
	}
	if len(sensorOf) != 30 {
		t.Errorf("%d devices seen in 30000 readings of 30, want 30", len(sensorOf))
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	for _, k := range kinds {
		now := epoch
		g := k.new(plain(Options{Now: func() time.Time { now = now.Add(time.Second); return now }}))
		for i := 1; i <= 3; i++ {
			ev, _ := g.Next()
			if got, want := decode(t, ev)["ts"], float64(epoch.Add(time.Duration(i)*time.Second).UnixMilli()); got != want {
				t.Errorf("%s: event %d ts = %v, want %v", k.name, i, got, want)
			}
		}
	}
}

// counts classifies events as the pipelines' decoder would.
type counts struct {
	total, notJSON, missingKey, duplicates int
	keys                                   map[string]bool
}

func classify(tb testing.TB, events []generated, keyField, idField string) counts {
	tb.Helper()
	c := counts{total: len(events), keys: map[string]bool{}}
	seen := map[string]bool{}
	for i, e := range events {
		if !json.Valid(e.event) {
			c.notJSON++
			if e.key != "" {
				tb.Fatalf("event %d %q is not JSON but has key %q", i, e.event, e.key)
			}
			continue
		}
		m := decode(tb, e.event)
		key, ok := m[keyField].(string)
		if !ok {
			c.missingKey++
			if e.key != "" {
				tb.Fatalf("event %d %s has no %s but key %q", i, e.event, keyField, e.key)
			}
			continue
		}
		if key != e.key {
			tb.Fatalf("event %d %s: key %q, want %q", i, e.event, e.key, key)
		}
		c.keys[key] = true
		id := m[idField].(string)
		if seen[id] {
			c.duplicates++
		}
		seen[id] = true
	}
	return c
}

func TestFractions(t *testing.T) {
	t.Parallel()
	const n = 100_000
	tests := []struct {
		name        string
		dup, bad    float64
		wantDup     float64
		wantEachBad float64 // of not-JSON and of missing-key, each
	}{
		{"clean", 0, 0, 0, 0},
		{"duplicates", 0.2, 0, 0.2, 0},
		{"bad", 0, 0.1, 0, 0.05},
		{"both", 0.05, 0.02, 0.05, 0.01},
	}
	for _, k := range kinds {
		for _, tt := range tests {
			t.Run(k.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				g := k.new(plain(Options{Seed: 3, Keys: 500, Duplicates: tt.dup, Bad: tt.bad, Now: fixedClock(epoch)}))
				c := classify(t, take(t, g, n), k.keyField, k.idField)
				frac := func(x int) float64 { return float64(x) / float64(c.total) }
				// Generous: the standard error at n = 100k is under 0.002.
				const tol = 0.01
				if got := frac(c.duplicates); math.Abs(got-tt.wantDup) > tol {
					t.Errorf("duplicate fraction = %.4f, want %.2f ± %.2f", got, tt.wantDup, tol)
				}
				if got := frac(c.notJSON); math.Abs(got-tt.wantEachBad) > tol {
					t.Errorf("not-JSON fraction = %.4f, want %.3f ± %.2f", got, tt.wantEachBad, tol)
				}
				if got := frac(c.missingKey); math.Abs(got-tt.wantEachBad) > tol {
					t.Errorf("missing-key fraction = %.4f, want %.3f ± %.2f", got, tt.wantEachBad, tol)
				}
				if len(c.keys) != 500 {
					t.Errorf("%d distinct keys, want all 500", len(c.keys))
				}
			})
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in               Options
		wantKeys         int
		wantDup, wantBad float64
	}{
		{Options{}, DefaultKeys, 0, 0},
		{Options{Keys: 3, Duplicates: 0.3, Bad: 0.2}, 3, 0.3, 0.2},
		{Options{Keys: -1, Duplicates: math.NaN(), Bad: -0.5}, DefaultKeys, 0, 0},
		{Options{Duplicates: 0.8, Bad: 0.4}, DefaultKeys, 0.6, 0.4},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		if got.Keys != tt.wantKeys || math.Abs(got.Duplicates-tt.wantDup) > 1e-12 || got.Bad != tt.wantBad || got.Now == nil {
			t.Errorf("%+v.withDefaults() = Keys %d, Duplicates %v, Bad %v, Now set %v; want %d, %v, %v, true",
				tt.in, got.Keys, got.Duplicates, got.Bad, got.Now != nil, tt.wantKeys, tt.wantDup, tt.wantBad)
		}
	}
}

func TestAppendString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", `quo"te`, `back\slash`, "ctl\x00\n\t\x1f", "ünïcode", "<&>"} {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil || got != s {
			t.Errorf("appendString(%q) = %s, decodes to %q, %v; want %q", s, b, got, err, s)
		}
	}
}

func BenchmarkNext(b *testing.B) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			g := k.new(Options{Seed: 1, Duplicates: 0.01, Bad: 0.01})
			b.ReportAllocs()
			for b.Loop() {
				g.Next()
			}
		})
	}
}
