package processor

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Keyed state. With ordering key a partition has one fenced owner, the
// only writer of its keys' state, so the owner keeps recently used state in
// memory: each key's hashes as committed, plus the effects of the key's
// entries handled since and not yet committed (a key's entries are handled
// one at a time, in order, so each sees the state its predecessors left).
// What a batch misses is loaded in one pipelined read before its entries
// are handled. The cache belongs to one session: it is made anew when the
// owner takes the partition, so it never outlives a lost lease.

// ErrUndeclaredState is returned by Message.State for a state name that
// Options.StateNames does not list.
var ErrUndeclaredState = errors.New("processor: state name not declared in Options.StateNames")

// State is a read-only view of one state hash of a key: what is committed,
// plus the effects of the key's entries handled before this one and of this
// message's own earlier effects.
type State struct {
	fields map[string]string
}

// Get returns a field's value and whether it is set.
func (s State) Get(field string) (string, bool) {
	v, ok := s.fields[field]
	return v, ok
}

// Int returns a field as an integer; 0 when unset or not an integer.
func (s State) Int(field string) int64 {
	n, _ := strconv.ParseInt(s.fields[field], 10, 64)
	return n
}

// Float returns a field as a number; 0 when unset or not a number.
func (s State) Float(field string) float64 {
	f, _ := strconv.ParseFloat(s.fields[field], 64)
	return f
}

// Fields returns a copy of every field.
func (s State) Fields() map[string]string {
	out := make(map[string]string, len(s.fields))
	for k, v := range s.fields {
		out[k] = v
	}
	return out
}

// Len is the number of fields.
func (s State) Len() int { return len(s.fields) }

// State returns the key's state hash name. See State for what it holds.
func (m *Message) State(name string) (State, error) {
	if m.states == nil || !slices.Contains(m.states.names, name) {
		return State{}, fmt.Errorf("%w: %q", ErrUndeclaredState, name)
	}
	fields := m.states.get(m.Key, name)
	key := m.stateKey(name)
	for i := range m.effects {
		e := &m.effects[i]
		if e.Key != key {
			continue
		}
		if spec := effectKinds[e.Kind]; spec.cache != nil {
			spec.cache(fields, e)
		}
	}
	return State{fields: fields}, nil
}

func (m *Message) keyspace() keyspace {
	if m.ks.stream != "" {
		return m.ks
	}
	return keyspace{stream: m.Stream, n: 1}
}

func (m *Message) stateKey(name string) string {
	ks := m.keyspace()
	return StateKey(ks.stream, ks.p, ks.n, ks.group, name, m.Key)
}

// StateSet records an HSET of the key's state hash name with field/value
// pairs.
func (m *Message) StateSet(name string, pairs ...string) {
	m.effects = append(m.effects, Effect{Kind: EffectHSet, Key: m.stateKey(name), Fields: pairs})
}

// StateDel records an HDEL of fields of the key's state hash name.
func (m *Message) StateDel(name string, fields ...string) {
	m.effects = append(m.effects, Effect{Kind: EffectHDel, Key: m.stateKey(name), Fields: fields})
}

// StateIncr records an HINCRBY of field of the key's state hash name.
func (m *Message) StateIncr(name, field string, delta int64) {
	m.effects = append(m.effects, Effect{Kind: EffectHIncrBy, Key: m.stateKey(name), Fields: []string{field, strconv.FormatInt(delta, 10)}})
}

// StateIncrFloat records an HINCRBYFLOAT of field of the key's state hash
// name. The in-memory view adds in float64; Redis adds in long double, so
// a read after many fractional increments may differ in the last digits
// until the key is next loaded.
func (m *Message) StateIncrFloat(name, field string, delta float64) {
	m.effects = append(m.effects, Effect{Kind: EffectHIncrByFloat, Key: m.stateKey(name), Fields: []string{field, strconv.FormatFloat(delta, 'g', -1, 64)}})
}

// StateExpire records a time to live for the key's state hash name.
func (m *Message) StateExpire(name string, ttl time.Duration) {
	m.effects = append(m.effects, Effect{Kind: EffectPExpire, Key: m.stateKey(name), TTL: ttl})
}

// AddDistinct records a PFADD of elements to the key's HyperLogLog name
// (DistinctKey), for approximate distinct counts.
func (m *Message) AddDistinct(name string, elements ...string) {
	ks := m.keyspace()
	m.effects = append(m.effects, Effect{Kind: EffectPFAdd, Key: DistinctKey(ks.stream, ks.p, ks.n, ks.group, name, m.Key), Fields: elements})
}

// stateCache is an owner's in-memory state of its partition's keys.
type stateCache struct {
	ks    keyspace
	names []string
	size  int
	now   func() time.Time

	mu      sync.Mutex
	entries map[string]*stateEntry
	lru     list.List // of *stateEntry, most recently used first
}

type stateEntry struct {
	key    string
	hashes map[string]map[string]string // by state name
	// expires is when a state hash given a time to live lapses.
	expires map[string]time.Time
	// refs counts entries of the key dispatched and not yet committed: an
	// entry with refs is never evicted, so what they applied is not lost.
	refs int
	// stale is set when a commit disagreed with what was applied (a
	// duplicate found only by the commit): the entry is dropped once refs
	// falls to 0, and loaded again from Redis when next needed.
	stale bool
	elem  *list.Element
}

func newStateCache(ks keyspace, names []string, size int, now func() time.Time) *stateCache {
	return &stateCache{ks: ks, names: names, size: size, now: now, entries: map[string]*stateEntry{}}
}

// pin takes a reference on each key's entry (for entries being
// dispatched), loading the keys the cache misses in one pipelined read.
func (c *stateCache) pin(ctx context.Context, rdb redis.UniversalClient, keys []string) error {
	c.mu.Lock()
	var missing []string
	for _, k := range keys {
		if e, ok := c.entries[k]; ok && !e.stale {
			continue
		}
		if !slices.Contains(missing, k) {
			missing = append(missing, k)
		}
	}
	c.mu.Unlock()
	if len(missing) > 0 {
		loaded, err := c.load(ctx, rdb, missing)
		if err != nil {
			return err
		}
		c.mu.Lock()
		for _, e := range loaded {
			if old, ok := c.entries[e.key]; ok {
				if !old.stale || old.refs > 0 {
					continue // loaded meanwhile, or still in use
				}
				c.lru.Remove(old.elem)
			}
			e.elem = c.lru.PushFront(e)
			c.entries[e.key] = e
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		e := c.entries[k]
		e.refs++
		c.lru.MoveToFront(e.elem)
	}
	c.evict()
	return nil
}

// load reads the state hashes of keys in one round trip.
func (c *stateCache) load(ctx context.Context, rdb redis.UniversalClient, keys []string) ([]*stateEntry, error) {
	cmds := make([][]*redis.MapStringStringCmd, len(keys))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = make([]*redis.MapStringStringCmd, len(c.names))
			for j, name := range c.names {
				cmds[i][j] = p.HGetAll(ctx, StateKey(c.ks.stream, c.ks.p, c.ks.n, c.ks.group, name, k))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load state of %d keys: %w", len(keys), err)
	}
	out := make([]*stateEntry, len(keys))
	for i, k := range keys {
		e := &stateEntry{key: k, hashes: make(map[string]map[string]string, len(c.names))}
		for j, name := range c.names {
			e.hashes[name] = cmds[i][j].Val()
		}
		out[i] = e
	}
	return out, nil
}

// evict drops least recently used entries without references while the
// cache is over its size. Called with mu held.
func (c *stateCache) evict() {
	for el := c.lru.Back(); el != nil && len(c.entries) > c.size; {
		prev := el.Prev()
		if e := el.Value.(*stateEntry); e.refs == 0 {
			c.lru.Remove(el)
			delete(c.entries, e.key)
		}
		el = prev
	}
}

// get returns a copy of key's state hash name.
func (c *stateCache) get(key, name string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return map[string]string{}
	}
	if at, ok := e.expires[name]; ok && !c.now().Before(at) {
		e.hashes[name] = map[string]string{}
		delete(e.expires, name)
	}
	h := e.hashes[name]
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[k] = v
	}
	return out
}

// apply adds the effects of key's handled entry to its state.
func (c *stateCache) apply(key string, effects []Effect) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return
	}
	for i := range effects {
		ef := &effects[i]
		for _, name := range c.names {
			if ef.Key != StateKey(c.ks.stream, c.ks.p, c.ks.n, c.ks.group, name, key) {
				continue
			}
			h := e.hashes[name]
			if h == nil {
				h = map[string]string{}
				e.hashes[name] = h
			}
			if spec := effectKinds[ef.Kind]; spec.cache != nil {
				spec.cache(h, ef)
			} else if ef.Kind == EffectPExpire {
				if e.expires == nil {
					e.expires = map[string]time.Time{}
				}
				e.expires[name] = c.now().Add(ef.TTL)
			}
		}
	}
}

// release drops the reference of a committed (or abandoned) entry of key;
// agreed is false when the commit did not write what the handler's
// effects, already applied, said.
func (c *stateCache) release(key string, agreed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return
	}
	e.refs--
	if !agreed {
		e.stale = true
	}
	if e.refs <= 0 && e.stale {
		c.lru.Remove(e.elem)
		delete(c.entries, key)
	}
}
