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
	applyState(fields, m.stateKey(name), m.effects)
	return State{fields: fields}, nil
}

// StateField returns one field of the key's state hash name, as State
// would, without copying the rest of the hash: a step that keeps many
// fields (an open window each) and reads one saves the copy.
func (m *Message) StateField(name, field string) (string, bool, error) {
	if m.states == nil || !slices.Contains(m.states.names, name) {
		return "", false, fmt.Errorf("%w: %q", ErrUndeclaredState, name)
	}
	h := m.states.getField(m.Key, name, field)
	applyState(h, m.stateKey(name), m.effects)
	v, ok := h[field]
	return v, ok, nil
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

// DistinctExpire records a time to live for the key's HyperLogLog name.
func (m *Message) DistinctExpire(name string, ttl time.Duration) {
	ks := m.keyspace()
	m.effects = append(m.effects, Effect{Kind: EffectPExpire, Key: DistinctKey(ks.stream, ks.p, ks.n, ks.group, name, m.Key), TTL: ttl})
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

// stateEntry is one key's state: base, as committed, and the effects of
// the key's entries handled since and not yet committed, in order. A read
// is base with those applied; a commit folds an entry's effects into base
// if it wrote them, or drops them if it did not (a duplicate found only by
// the commit, an effect it refused), so base never holds what Redis does
// not.
type stateEntry struct {
	key  string
	base map[string]map[string]string // by state name
	// expires is when a state hash with a time to live lapses.
	expires map[string]time.Time
	pending []applied
	// refs counts entries of the key dispatched and not yet committed: an
	// entry with refs is never evicted.
	refs int
	elem *list.Element
	// skeys are the key's state hash names, by index of stateCache.names,
	// made on first use (skeysOf).
	skeys []string
}

// applied is a handled entry's effects, keyed by its message.
type applied struct {
	m       *Message
	effects []Effect
}

func newStateCache(ks keyspace, names []string, size int, now func() time.Time) *stateCache {
	return &stateCache{ks: ks, names: names, size: size, now: now, entries: map[string]*stateEntry{}}
}

// pin takes a reference on each key's entry (for entries being
// dispatched), loading the keys the cache misses in one pipelined read.
// References are taken on what is cached at once, so that nothing can
// evict it while the rest loads.
func (c *stateCache) pin(ctx context.Context, rdb redis.UniversalClient, keys []string) error {
	c.mu.Lock()
	var missing []string
	var wanted map[string]bool // missing keys, for the references taken once they are loaded
	for _, k := range keys {
		if e, ok := c.entries[k]; ok {
			e.refs++
			c.lru.MoveToFront(e.elem)
			continue
		}
		if wanted == nil {
			wanted = map[string]bool{}
		}
		if !wanted[k] {
			wanted[k] = true
			missing = append(missing, k)
		}
	}
	c.mu.Unlock()
	var loaded []*stateEntry
	if len(missing) > 0 {
		var err error
		if loaded, err = c.load(ctx, rdb, missing); err != nil {
			c.unpin(keys, wanted)
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range loaded {
		if _, ok := c.entries[e.key]; !ok { // else loaded meanwhile by the other dispatcher
			e.elem = c.lru.PushFront(e)
			c.entries[e.key] = e
		}
	}
	for _, k := range keys {
		if wanted[k] {
			e := c.entries[k]
			e.refs++
			c.lru.MoveToFront(e.elem)
		}
	}
	c.evict()
	return nil
}

// unpin drops the references pin took on keys that were cached (those not
// in missing), after a failed load.
func (c *stateCache) unpin(keys []string, missing map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if !missing[k] {
			if e, ok := c.entries[k]; ok {
				e.refs--
			}
		}
	}
}

// load reads the state hashes of keys, and their times to live, in one
// round trip.
func (c *stateCache) load(ctx context.Context, rdb redis.UniversalClient, keys []string) ([]*stateEntry, error) {
	type cmds struct {
		all *redis.MapStringStringCmd
		ttl *redis.DurationCmd
	}
	res := make([][]cmds, len(keys))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			res[i] = make([]cmds, len(c.names))
			for j, name := range c.names {
				key := StateKey(c.ks.stream, c.ks.p, c.ks.n, c.ks.group, name, k)
				res[i][j] = cmds{all: p.HGetAll(ctx, key), ttl: p.PTTL(ctx, key)}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load state of %d keys: %w", len(keys), err)
	}
	now := c.now()
	out := make([]*stateEntry, len(keys))
	for i, k := range keys {
		e := &stateEntry{key: k, base: make(map[string]map[string]string, len(c.names))}
		for j, name := range c.names {
			e.base[name] = res[i][j].all.Val()
			if ttl := res[i][j].ttl.Val(); ttl > 0 {
				if e.expires == nil {
					e.expires = map[string]time.Time{}
				}
				e.expires[name] = now.Add(ttl)
			}
		}
		out[i] = e
	}
	return out, nil
}

// skeysOf returns e's state hash names, by index of c.names. Called with
// mu held.
func (c *stateCache) skeysOf(e *stateEntry) []string {
	if e.skeys == nil {
		e.skeys = make([]string, len(c.names))
		for j, name := range c.names {
			e.skeys[j] = StateKey(c.ks.stream, c.ks.p, c.ks.n, c.ks.group, name, e.key)
		}
	}
	return e.skeys
}

// skeyOf returns e's state hash name of name. Called with mu held.
func (c *stateCache) skeyOf(e *stateEntry, name string) string {
	for j, n := range c.names {
		if n == name {
			return c.skeysOf(e)[j]
		}
	}
	return StateKey(c.ks.stream, c.ks.p, c.ks.n, c.ks.group, name, e.key)
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

// get returns key's state hash name: base, lapsed if its time to live has
// passed, with the pending effects applied.
func (c *stateCache) get(key, name string) map[string]string {
	return c.read(key, name, nil)
}

// getField returns what get would hold of field: a hash of field alone
// (if set), with the pending effects applied (an effect on other fields
// may add them; they are not looked at).
func (c *stateCache) getField(key, name, field string) map[string]string {
	return c.read(key, name, &field)
}

// read is get, of every field (field nil) or of one: base, lapsed if its
// time to live has passed, with the pending effects applied.
func (c *stateCache) read(key, name string, field *string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	e, ok := c.entries[key]
	if !ok {
		return out
	}
	if at, ok := e.expires[name]; ok && !c.now().Before(at) {
		e.base[name] = map[string]string{}
		delete(e.expires, name)
	}
	if field == nil {
		for k, v := range e.base[name] {
			out[k] = v
		}
	} else if v, ok := e.base[name][*field]; ok {
		out[*field] = v
	}
	sk := c.skeyOf(e, name)
	for _, a := range e.pending {
		applyState(out, sk, a.effects)
	}
	return out
}

// apply records the effects of key's handled entry m.
func (c *stateCache) apply(key string, m *Message, effects []Effect) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		e.pending = append(e.pending, applied{m: m, effects: effects})
	}
}

// release drops the reference of a committed (or abandoned) entry m of
// key; written tells whether the commit wrote its effects, which are then
// folded into base, else dropped.
func (c *stateCache) release(key string, m *Message, written bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return
	}
	e.refs--
	for i, a := range e.pending {
		if a.m != m {
			continue
		}
		if written && len(a.effects) > 0 {
			skeys := c.skeysOf(e)
			for j, name := range c.names {
				h := e.base[name]
				if h == nil {
					h = map[string]string{}
					e.base[name] = h
				}
				sk := skeys[j]
				applyState(h, sk, a.effects)
				for _, ef := range a.effects {
					if ef.Kind == EffectPExpire && ef.Key == sk {
						if e.expires == nil {
							e.expires = map[string]time.Time{}
						}
						e.expires[name] = c.now().Add(ef.TTL)
					}
				}
			}
		}
		e.pending = slices.Delete(e.pending, i, i+1)
		break
	}
}

// applyState applies to h the effects on state hash key.
func applyState(h map[string]string, key string, effects []Effect) {
	for i := range effects {
		ef := &effects[i]
		if ef.Key != key {
			continue
		}
		if spec := effectKinds[ef.Kind]; spec.cache != nil {
			spec.cache(h, ef)
		}
	}
}
