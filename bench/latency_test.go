package bench

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	tests := []struct {
		rate    int
		elapsed time.Duration
		want    int64
	}{
		{5000, 0, 0},
		{5000, -time.Millisecond, 0},
		{5000, time.Millisecond, 5}, // rate/1000 per 1ms tick
		{20000, time.Millisecond, 20},
		{20000, 10 * time.Second, 200000},
		{333, time.Millisecond, 0}, // below one per tick: sent as they fall due
		{333, 3 * time.Millisecond, 0},
		{333, 4 * time.Millisecond, 1},
		{333, time.Second, 333},
		{333, 1500 * time.Millisecond, 499},
		{1, 999 * time.Millisecond, 0},
		{1, time.Second, 1},
		{10_000_000, time.Hour, 36_000_000_000}, // no overflow
	}
	for _, tt := range tests {
		if got := due(tt.rate, tt.elapsed); got != tt.want {
			t.Errorf("due(%d, %v) = %d, want %d", tt.rate, tt.elapsed, got, tt.want)
		}
	}
}

// Late and irregular ticks do not change the schedule: what is due is
// worked out from the start, so the total after any run of ticks is what
// the rate says for the time passed, and never more.
func TestDueDoesNotDrift(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, rate := range []int{1, 333, 5000, 20000, 54321} {
		var sent int64
		elapsed := time.Duration(0)
		for range 5000 {
			elapsed += time.Duration(rng.Int64N(int64(3 * time.Millisecond))) // 0 to 3ms late
			n := due(rate, elapsed) - sent
			if n < 0 {
				t.Fatalf("rate %d: due went down at %v", rate, elapsed)
			}
			sent += n
		}
		want := int64(float64(rate) * elapsed.Seconds())
		if sent < want-1 || sent > want {
			t.Errorf("rate %d: sent %d after %v, want %d", rate, sent, elapsed, want)
		}
	}
}

func TestStampOf(t *testing.T) {
	tests := []struct {
		name, data string
		want       int64
		wantErr    bool
	}{
		{"as produced", `{"event_id":"t1-1","user_id":"u1","ts":1700000000123456789,"type":"page_view"}`, 1700000000123456789, false},
		{"as eddy outputs it (sorted keys)", `{"event_id":"t1-1","pad":"xx","ts":1700000000123456789,"user_id":"u1"}`, 1700000000123456789, false},
		{"last field", `{"a":1,"ts":42}`, 42, false},
		{"spaces", `{"ts": 42 , "a":1}`, 42, false},
		{"a float", `{"ts":1.5e3}`, 1500, false},
		{"not a number", `{"ts":"soon"}`, 0, true},
		{"not JSON", `ts`, 0, true},
	}
	for _, tt := range tests {
		got, err := stampOf(tt.data)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: stampOf(%s) = %d, %v; want %d, error %v", tt.name, tt.data, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestRoundRate(t *testing.T) {
	tests := []struct {
		in   float64
		want int
	}{{0, 100}, {49, 100}, {151, 200}, {54321.5, 54300}, {0.9 * 60392, 54400}}
	for _, tt := range tests {
		if got := roundRate(tt.in); got != tt.want {
			t.Errorf("roundRate(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
