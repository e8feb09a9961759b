package metrics

import (
	"maps"
	"sync"
	"sync/atomic"
)

// cowMap is a copy-on-write map for series children, which are created once
// and then looked up on every call. A lookup is an atomic load and a map
// read: no lock, no allocation (unlike sync.Map, whose any-typed keys make a
// string or struct key escape). Creating an entry copies the map, which is
// fine for the handful of pipelines, partitions and reasons there are.
type cowMap[K comparable, V any] struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[K]V]
}

// load returns the value of k, if it has been created.
func (c *cowMap[K, V]) load(k K) (V, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// loadOrCreate returns the value of k, creating it with create(k) if absent.
// create runs at most once per key, under the writer lock.
func (c *cowMap[K, V]) loadOrCreate(k K, create func(K) V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
	}
	next := make(map[K]V, 1)
	if old != nil {
		next = maps.Clone(*old)
	}
	v := create(k)
	next[k] = v
	c.m.Store(&next)
	return v
}
