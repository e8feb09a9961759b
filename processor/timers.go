package processor

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Timers. Each partition keeps its timers in two sorted sets that share
// the partition's hash tag (one for processing-time timers, scored by when
// they are due in unix ms; one for event-time timers, scored by the event
// time they wait for) and a hash of their data. Setting and cancelling a
// timer are commit effects. The owner fires due timers through their key's
// lane, in order with that key's entries; the firing's effects and the
// timer's removal commit atomically, only while the timer is still set
// with the same due time, so each timer fires exactly once across crashes,
// fencing and owner changes.

// TimerSpec is a timer of one key: set with Message.SetTimer, delivered to
// the Handler as Message.Timer when it fires.
type TimerSpec struct {
	// Key is the message key the timer belongs to; it fires in that key's
	// lane.
	Key string
	// Name tells the key's timers apart: setting a name again moves it.
	Name string
	// At is when it is due: a wall-clock time, or with EventTime an event
	// time that the partition's watermark must reach.
	At time.Time
	// EventTime makes the timer wait for the watermark (the highest event
	// time seen, less AllowedLateness) rather than the clock.
	EventTime bool
	// Payload is carried to the firing, at most MaxTimerPayload bytes.
	Payload string
}

// MaxTimerPayload bounds TimerSpec.Payload.
const MaxTimerPayload = 64 << 10

// timerSep separates a timer's key and name, and the parts of its data.
const timerSep = "\x1f"

func (t *TimerSpec) check() error {
	switch {
	case t.Name == "":
		return errors.New("timer without a name")
	case strings.Contains(t.Name, timerSep) || strings.Contains(t.Key, timerSep):
		return errors.New(`timer key or name contains the unit separator "\x1f"`)
	case t.At.IsZero():
		return fmt.Errorf("timer %q has no due time", t.Name)
	case len(t.Payload) > MaxTimerPayload:
		return fmt.Errorf("timer %q payload is %d bytes, over %d", t.Name, len(t.Payload), MaxTimerPayload)
	}
	return nil
}

// timerMember is the sorted-set member of a key's named timer.
func timerMember(key, name string) string { return key + timerSep + name }

// encodeTimerData is what the data hash holds for a timer: due ms, "e" for
// event time or "p", and the payload.
func encodeTimerData(t *TimerSpec) string {
	kind := "p"
	if t.EventTime {
		kind = "e"
	}
	return strconv.FormatInt(t.At.UnixMilli(), 10) + timerSep + kind + timerSep + t.Payload
}

// decodeTimer rebuilds a timer from its member and data.
func decodeTimer(member, data string) (TimerSpec, error) {
	key, name, ok := strings.Cut(member, timerSep)
	if !ok {
		return TimerSpec{}, fmt.Errorf("timer member %q: no separator", member)
	}
	due, rest, ok1 := strings.Cut(data, timerSep)
	kind, payload, ok2 := strings.Cut(rest, timerSep)
	ms, err := strconv.ParseInt(due, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return TimerSpec{}, fmt.Errorf("timer %q: malformed data %q", member, data)
	}
	return TimerSpec{Key: key, Name: name, At: time.UnixMilli(ms), EventTime: kind == "e", Payload: payload}, nil
}

// timerKeys are a partition's timer keys.
type timerKeys struct {
	processing, event, data string
}

func (k timerKeys) queue(eventTime bool) string {
	if eventTime {
		return k.event
	}
	return k.processing
}

func timerKeysOf(ks keyspace) timerKeys {
	return timerKeys{
		processing: partitionKey(ks.stream, ks.p, ks.n, "timers", ks.group),
		event:      partitionKey(ks.stream, ks.p, ks.n, "etimers", ks.group),
		data:       partitionKey(ks.stream, ks.p, ks.n, "timerdata", ks.group),
	}
}

// SetTimer records a timer of the message's key, named name, due at at
// (a wall-clock time), carrying payload; setting a name that is already set
// moves it. Like every effect it is written only if the message commits.
func (m *Message) SetTimer(name string, at time.Time, payload string) {
	m.effects = append(m.effects, Effect{Kind: EffectTimerSet, Timer: &TimerSpec{Key: m.Key, Name: name, At: at, Payload: payload}})
}

// SetEventTimer records a timer that fires once the partition's watermark
// reaches event time at.
func (m *Message) SetEventTimer(name string, at time.Time, payload string) {
	m.effects = append(m.effects, Effect{Kind: EffectTimerSet, Timer: &TimerSpec{Key: m.Key, Name: name, At: at, EventTime: true, Payload: payload}})
}

// CancelTimer records the cancelling of the key's timer name, if set.
func (m *Message) CancelTimer(name string) {
	m.effects = append(m.effects, Effect{Kind: EffectTimerCancel, Timer: &TimerSpec{Key: m.Key, Name: name}})
}
