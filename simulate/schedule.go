package simulate

import (
	"container/heap"
	"math/rand/v2"
	"time"
)

// schedule is who may send next: the keys not silent, the silent ones
// with the time each wakes, and the burst in progress. A generator has one
// only with Options.Bursts or Options.Silences; without silences, active
// stays 0..keys-1 in order, so that a key is drawn exactly as without a
// schedule.
type schedule struct {
	active []int32 // keys not silent
	pos    []int32 // index of each key in active; -1 while silent
	quiet  wakes   // silent keys by wake time

	burstKey  int
	burstLeft int // events of the burst still to come
}

func newSchedule(keys int) *schedule {
	s := &schedule{active: make([]int32, keys), pos: make([]int32, keys)}
	for k := range keys {
		s.active[k] = int32(k)
		s.pos[k] = int32(k)
	}
	return s
}

// pick draws a key uniformly among the active ones.
func (s *schedule) pick(r *rand.Rand) int {
	return int(s.active[r.IntN(len(s.active))])
}

// burst returns the key of the burst in progress, and counts its event.
func (s *schedule) burst() (int, bool) {
	if s.burstLeft == 0 {
		return 0, false
	}
	s.burstLeft--
	return s.burstKey, true
}

// after decides, after a fresh event of key k that was not part of a
// burst, whether k starts a burst or else goes quiet.
func (s *schedule) after(r *rand.Rand, o Options, k int, now time.Time) {
	if o.Bursts > 0 && r.Float64() < o.Bursts {
		s.burstKey, s.burstLeft = k, o.BurstSize-1
		return
	}
	if o.Silences > 0 && r.Float64() < o.Silences && len(s.active) > 1 {
		d := time.Duration(float64(o.Silence) * (0.5 + r.Float64()))
		s.silence(k, now.Add(d))
	}
}

// silence takes k out of the active keys until the clock reaches until.
func (s *schedule) silence(k int, until time.Time) {
	i := s.pos[k]
	last := len(s.active) - 1
	moved := s.active[last]
	s.active[i] = moved
	s.pos[moved] = i
	s.active = s.active[:last]
	s.pos[k] = -1
	heap.Push(&s.quiet, wake{at: until, key: int32(k)})
}

// wake makes active again every key whose silence has ended by now.
func (s *schedule) wake(now time.Time) {
	for len(s.quiet) > 0 && !s.quiet[0].at.After(now) {
		w := heap.Pop(&s.quiet).(wake)
		s.pos[w.key] = int32(len(s.active))
		s.active = append(s.active, w.key)
	}
}

// silent reports whether key k is silent.
func (s *schedule) silent(k int) bool { return s.pos[k] < 0 }

// wake is a silent key and when its silence ends.
type wake struct {
	at  time.Time
	key int32
}

// wakes is a min-heap of wakes by time (container/heap).
type wakes []wake

func (w wakes) Len() int { return len(w) }
func (w wakes) Less(i, j int) bool {
	if !w[i].at.Equal(w[j].at) {
		return w[i].at.Before(w[j].at)
	}
	return w[i].key < w[j].key // a set order for equal times: deterministic
}
func (w wakes) Swap(i, j int) { w[i], w[j] = w[j], w[i] }
func (w *wakes) Push(x any)   { *w = append(*w, x.(wake)) }
func (w *wakes) Pop() any {
	old := *w
	x := old[len(old)-1]
	*w = old[:len(old)-1]
	return x
}
