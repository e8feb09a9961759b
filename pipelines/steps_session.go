package pipelines

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// session: clickstream sessions of each key, summarised when they close.
//
//	session:
//	  name: sessions
//	  output: {stream: clicks:sessions}
//	  gap: 30m
//	  max_length: 4h
//	  grace: 1m
//	  page: page
//	  converted: 'type == "purchase"'
//	  max_pages: 50
//	  late: drop
//
// A session is a run of a key's events, each less than gap after the one
// before in the step's time (event time or processing time, see
// analyticsConfig.Time), and shorter than max_length: an event at or after
// start + max_length does not join the session (it starts a new one). An
// event that falls within gap of two open sessions bridges them: they merge
// into one (and one summary is emitted), unless the merged session would
// be max_length or longer, when it joins the earliest of them only.
//
// A session closes when the step's time reaches min(last + gap, start +
// max_length) + grace, by a timer even if the key receives nothing more,
// and its summary (kind "session") is emitted: start, end (the time of its
// latest event), duration_ms, events, entry_page and exit_page (the page of
// its earliest and of its latest event that has one; among events of the
// same time, the first and the last to arrive), pages (the distinct pages,
// ordered by the time each was first seen, at most max_pages of them: those
// first seen earliest) with pages_truncated, and converted (whether any
// event met the converted condition). Its id is "<name>:<key>:<start ms>".
//
// In event time an event is late when its time is more than grace behind
// the partition's watermark (t + grace < watermark): it would join or
// start a session that may have closed already (a closed session's reach
// is at most watermark - grace), so it is handled by late instead.
// An event within grace joins its sessions even when out of order, and may
// move their start and entry page earlier. In processing time nothing is
// late and grace is not used.
//
// The open sessions of a key are one JSON value in the field "open" of the
// step's keyed state, with one timer "<name>:close" at the earliest close;
// when the last one closes the field is deleted.
type sessionStep struct {
	analytic
	gap, maxLength time.Duration
	page           Path
	converted      *Cond
	maxPages       int
	latePolicy     LatePolicy
}

// sessionConfig is the YAML of a session step.
type sessionConfig struct {
	// Name names the step's state, timers, metrics and result ids.
	// Required, unique among the pipeline's states.
	Name string `yaml:"name"`
	// Time is "event" or "processing". Default: event when the pipeline
	// has input.event_time, else processing.
	Time string `yaml:"time"`
	// Output is where the summaries go. Required.
	Output ResultOutput `yaml:"output"`
	// Gap is the inactivity that ends a session. Default 30m; must be
	// positive.
	Gap time.Duration `yaml:"gap"`
	// MaxLength bounds a session from its start: an event at or after
	// start + max_length starts a new session. Default 24h; must be
	// positive.
	MaxLength time.Duration `yaml:"max_length"`
	// Grace is how far behind the watermark an event may be and still
	// count (event time), and so how long after its reach a session waits
	// before it closes. Default 0; at most the dedupe window.
	Grace time.Duration `yaml:"grace"`
	// Page is the path of the page field. Default "page". Events without
	// it count but add no page.
	Page *Path `yaml:"page"`
	// Converted, if set, is a condition: the session converted if any of
	// its events met it. Default: none (converted is always false).
	Converted *Cond `yaml:"converted"`
	// MaxPages bounds the distinct pages kept per session (its state
	// size), 1 to 10000. Default 50.
	MaxPages int `yaml:"max_pages"`
	// Late is what happens to a late event: "drop" (default),
	// "dead_letter" or "stream:<name>".
	Late string `yaml:"late"`
}

func (c *sessionConfig) analytics() analyticsConfig {
	return analyticsConfig{Name: c.Name, Time: c.Time, Output: c.Output}
}

// Defaults of the session step.
const (
	DefaultSessionGap       = 30 * time.Minute
	DefaultSessionMaxLength = 24 * time.Hour
	DefaultSessionMaxPages  = 50
	maxSessionPages         = 10000
)

// sessionField is the state field holding a key's open sessions.
const sessionField = "open"

// sessionTimer is the suffix of the key's timer at its earliest close.
const sessionTimer = "close"

func newSession(cfg StepConfig) (Step, error) {
	var c sessionConfig
	a, errs := decodeAnalytic(cfg, &c)
	s := &sessionStep{analytic: a, gap: c.Gap, maxLength: c.MaxLength, converted: c.Converted, maxPages: c.MaxPages}
	s.grace = c.Grace
	positive := func(field string, d *time.Duration, def time.Duration) {
		switch {
		case cfg.Has(field) && *d <= 0:
			errs = append(errs, cfg.Errorf(field, "must be positive, got %s", *d))
		case *d == 0:
			*d = def
		}
	}
	positive("gap", &s.gap, DefaultSessionGap)
	positive("max_length", &s.maxLength, DefaultSessionMaxLength)
	if c.Grace < 0 {
		errs = append(errs, cfg.Errorf("grace", "must be at least 0, got %s", c.Grace))
	}
	switch {
	case cfg.Has("max_pages") && (c.MaxPages < 1 || c.MaxPages > maxSessionPages):
		errs = append(errs, cfg.Errorf("max_pages", "want 1 to %d, got %d", maxSessionPages, c.MaxPages))
	case c.MaxPages == 0:
		s.maxPages = DefaultSessionMaxPages
	}
	s.page = fieldPath("page")
	if c.Page != nil {
		s.page = *c.Page
	}
	late, err := parseLate(cfg, c.Late)
	errs = append(errs, err)
	s.latePolicy = late
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// openSession is an open session as the state keeps it. Times are unix ms
// in the step's time.
type openSession struct {
	Start     int64    `json:"s"`
	Last      int64    `json:"l"`
	Events    int64    `json:"n"`
	Entry     *pageAt  `json:"in,omitempty"`
	Exit      *pageAt  `json:"out,omitempty"`
	Pages     []pageAt `json:"p,omitempty"` // by first time, at most maxPages
	Truncated bool     `json:"tr,omitempty"`
	Converted bool     `json:"c,omitempty"`
}

// pageAt is a page and when it was seen.
type pageAt struct {
	Page string `json:"p"`
	At   int64  `json:"t"`
}

// reach is the time from which an event no longer joins the session.
func (s *sessionStep) reach(o *openSession) int64 {
	return min(o.Last+s.gap.Milliseconds(), o.Start+s.maxLength.Milliseconds())
}

// closeAt is when the session closes, in the step's time.
func (s *sessionStep) closeAt(o *openSession) time.Time {
	return time.UnixMilli(s.reach(o) + s.eventGraceMS())
}

// accepts reports whether an event at t joins o.
func (s *sessionStep) accepts(o *openSession, t int64) bool {
	if t >= o.Start {
		return t < s.reach(o)
	}
	return o.Start-t < s.gap.Milliseconds() && o.Last-t < s.maxLength.Milliseconds()
}

// Process adds the event to the key's sessions.
func (s *sessionStep) Process(_ context.Context, ev *Event) (bool, error) {
	m := ev.Message()
	t, err := s.stepTimeMS(ev)
	if err != nil {
		return false, err
	}
	if s.behindWatermark(m, t) {
		return s.late(ev, s.latePolicy, "its session")
	}
	var open []openSession
	if _, err := s.load(m, sessionField, &open); err != nil {
		return false, err
	}
	open, err = s.closeDue(m, open)
	if err != nil {
		return false, err
	}
	page, hasPage := "", false
	if v, ok := ev.Get(s.page); ok && v != nil {
		page, hasPage = formatValue(v), true
	}
	converted := false
	if s.converted != nil {
		if converted, err = s.converted.Test(ev); err != nil {
			return false, fmt.Errorf("converted: %w", err)
		}
	}
	open = s.add(m, open, t, page, hasPage, converted)
	return true, s.store(m, open)
}

// add puts the event at t into open (sorted by start): into the earliest
// session that accepts it, merged with the others it bridges, or into a
// new one.
func (s *sessionStep) add(m *processor.Message, open []openSession, t int64, page string, hasPage, converted bool) []openSession {
	base := -1
	for i := 0; i < len(open); i++ {
		if !s.accepts(&open[i], t) {
			continue
		}
		if base < 0 {
			base = i
			continue
		}
		b, o := &open[base], &open[i]
		if max(b.Last, o.Last, t)-min(b.Start, o.Start, t) >= s.maxLength.Milliseconds() {
			break
		}
		s.merge(b, o)
		open = append(open[:i], open[i+1:]...)
		i--
		m.GaugeAdd(GaugeOpen(s.name), -1)
	}
	if base < 0 {
		open = append(open, openSession{Start: t, Last: t})
		base = len(open) - 1
		m.GaugeAdd(GaugeOpen(s.name), 1)
	}
	o := &open[base]
	o.Start, o.Last = min(o.Start, t), max(o.Last, t)
	o.Events++
	o.Converted = o.Converted || converted
	if hasPage {
		p := pageAt{Page: page, At: t}
		if o.Entry == nil || t < o.Entry.At {
			o.Entry = &p
		}
		if o.Exit == nil || t >= o.Exit.At {
			o.Exit = &p
		}
		s.addPage(o, p)
	}
	sort.SliceStable(open, func(i, j int) bool { return open[i].Start < open[j].Start })
	return open
}

// addPage records p among o's distinct pages, keeping the maxPages first
// seen earliest.
func (s *sessionStep) addPage(o *openSession, p pageAt) {
	for i := range o.Pages {
		if o.Pages[i].Page == p.Page {
			if p.At < o.Pages[i].At {
				o.Pages[i].At = p.At
				sortPages(o.Pages)
			}
			return
		}
	}
	o.Pages = append(o.Pages, p)
	sortPages(o.Pages)
	if len(o.Pages) > s.maxPages {
		o.Pages = o.Pages[:s.maxPages]
		o.Truncated = true
	}
}

// sortPages orders pages by when they were first seen; ties keep their
// order (arrival).
func sortPages(ps []pageAt) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].At < ps[j].At })
}

// merge folds o into b.
func (s *sessionStep) merge(b, o *openSession) {
	if o.Entry != nil && (b.Entry == nil || o.Entry.At < b.Entry.At) {
		b.Entry = o.Entry
	}
	if o.Exit != nil && (b.Exit == nil || o.Exit.At > b.Exit.At) {
		b.Exit = o.Exit
	}
	b.Start, b.Last = min(b.Start, o.Start), max(b.Last, o.Last)
	b.Events += o.Events
	b.Converted = b.Converted || o.Converted
	b.Truncated = b.Truncated || o.Truncated
	for _, p := range o.Pages {
		s.addPage(b, p)
	}
}

// closeDue emits and removes the sessions whose close the step's time has
// reached; the same rule for events and timer firings.
func (s *sessionStep) closeDue(m *processor.Message, open []openSession) ([]openSession, error) {
	kept := open[:0]
	for i := range open {
		o := &open[i]
		if !s.closed(m, s.closeAt(o)) {
			kept = append(kept, *o)
			continue
		}
		if err := s.emit(m, KindSession, s.resultID(m, fmt.Sprint(o.Start)), s.summary(o)); err != nil {
			return nil, err
		}
		m.GaugeAdd(GaugeOpen(s.name), -1)
	}
	return kept, nil
}

// store saves the open sessions and sets the timer at the earliest close,
// or deletes the field and the timer when none is left.
func (s *sessionStep) store(m *processor.Message, open []openSession) error {
	if len(open) == 0 {
		s.drop(m, sessionField)
		s.cancelTimer(m, sessionTimer)
		return nil
	}
	next := s.closeAt(&open[0])
	for i := range open[1:] {
		if c := s.closeAt(&open[i+1]); c.Before(next) {
			next = c
		}
	}
	if err := s.save(m, sessionField, open); err != nil {
		return err
	}
	s.setTimer(m, sessionTimer, next, "")
	return nil
}

// summary is the result of a closed session.
func (s *sessionStep) summary(o *openSession) map[string]any {
	pages := make([]string, len(o.Pages))
	for i, p := range o.Pages {
		pages[i] = p.Page
	}
	r := map[string]any{
		"start":           o.Start,
		"end":             o.Last,
		"start_iso":       isoMS(o.Start),
		"end_iso":         isoMS(o.Last),
		"duration_ms":     o.Last - o.Start,
		"events":          o.Events,
		"entry_page":      nil,
		"exit_page":       nil,
		"pages":           pages,
		"pages_truncated": o.Truncated,
		"converted":       o.Converted,
	}
	if o.Entry != nil {
		r["entry_page"] = o.Entry.Page
	}
	if o.Exit != nil {
		r["exit_page"] = o.Exit.Page
	}
	return r
}

// isoMS formats unix ms as RFC 3339 in UTC.
func isoMS(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

// Fire closes the key's sessions whose close is due.
func (s *sessionStep) Fire(_ context.Context, ev *Event) error {
	m := ev.Message()
	if _, ok := s.ownsTimer(m); !ok {
		return nil
	}
	var open []openSession
	found, err := s.load(m, sessionField, &open)
	if err != nil || !found {
		return err
	}
	open, err = s.closeDue(m, open)
	if err != nil {
		return err
	}
	return s.store(m, open)
}

var _ TimerStep = (*sessionStep)(nil)
