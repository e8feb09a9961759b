package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/processor"
)

// pipelineView is one pipeline on the overview.
type pipelineView struct {
	Name, Stream, Group, Ordering, DeadLetterStream string
	Workers                                         []workerView
	Partitions                                      []processor.PartitionStats
	Open                                            []openView
	DeadLetters                                     int64
	Pending                                         int64
	Retention                                       []processor.TrimReport
	// RetentionError says why Retention could not be read (a user without
	// scripting, say); the rest of the page is shown.
	RetentionError string
	// Version is the read model's version (eddy rebuild).
	Version int
}

type workerView struct {
	Consumer  string
	ExpiresIn time.Duration
}

// openView is what one analytics step holds open, over every partition.
type openView struct {
	Step  string
	Open  int64
	ByPar []int64
}

// overview shows every pipeline: its workers, its partitions (owner,
// fencing token, lease, length, lag, pending, oldest pending), what its
// analytics steps hold open, and how many dead letters it has.
func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	views := make([]pipelineView, 0, len(s.o.Pipelines))
	now := s.o.Now()
	for i := range s.o.Pipelines {
		p := &s.o.Pipelines[i]
		in, version, err := p.live(ctx)
		if err != nil {
			s.failRedis(w, r, err)
			return
		}
		o := in.Options()
		v := pipelineView{Name: p.Name, Stream: o.Stream, Group: o.Group, Ordering: o.Ordering, DeadLetterStream: o.DeadLetterStream, Version: version}
		members, err := in.Members(ctx)
		if err != nil {
			s.failRedis(w, r, err)
			return
		}
		for _, m := range members {
			v.Workers = append(v.Workers, workerView{Consumer: m.Consumer, ExpiresIn: m.Expires.Sub(now)})
		}
		if v.Partitions, err = in.Stats(ctx); err != nil {
			s.failRedis(w, r, err)
			return
		}
		for _, ps := range v.Partitions {
			v.Pending += ps.Pending
		}
		if len(p.Analytics) > 0 {
			gauges, err := in.Gauges(ctx)
			if err != nil {
				s.failRedis(w, r, err)
				return
			}
			for _, a := range p.Analytics {
				ov := openView{Step: a.Name}
				for _, g := range gauges {
					ov.Open += g[a.Gauge]
					ov.ByPar = append(ov.ByPar, g[a.Gauge])
				}
				v.Open = append(v.Open, ov)
			}
		}
		// on Redis's clock, as the workers trim
		if v.Retention, err = in.Retention(ctx, time.Time{}); err != nil {
			if !isReply(err) {
				s.failRedis(w, r, err)
				return
			}
			v.RetentionError = err.Error()
		}
		if v.DeadLetters, _, err = in.DeadLetterSpan(ctx); err != nil {
			s.failRedis(w, r, err)
			return
		}
		views = append(views, v)
	}
	s.render(w, r, http.StatusOK, "overview", "Pipelines", views)
}

// count reads the ?count= of a page: the default page size when absent,
// at most MaxPageSize.
func (s *Server) count(q url.Values) (int, bool) {
	v := q.Get("count")
	if v == "" {
		return s.o.PageSize, true
	}
	n, err := strconv.Atoi(v)
	return n, err == nil && n >= 1 && n <= MaxPageSize
}

type pendingPartition struct {
	Stats   processor.PartitionStats
	Entries []processor.PendingEntry
	More    bool
}

// pending shows each partition's pending entries, oldest first, with
// the consumer each was delivered to, its idle time and delivery count.
func (s *Server) pending(w http.ResponseWriter, r *http.Request) {
	p := s.pipeline(w, r)
	if p == nil {
		return
	}
	n, ok := s.count(r.URL.Query())
	if !ok {
		s.fail(w, r, http.StatusBadRequest, "count: want 1 to "+strconv.Itoa(MaxPageSize))
		return
	}
	ctx := r.Context()
	in, _, err := p.live(ctx)
	if err != nil {
		s.failRedis(w, r, err)
		return
	}
	stats, err := in.Stats(ctx)
	if err != nil {
		s.failRedis(w, r, err)
		return
	}
	parts := make([]pendingPartition, len(stats))
	for i, st := range stats {
		parts[i].Stats = st
		if st.Pending == 0 {
			continue
		}
		if parts[i].Entries, err = in.Pending(ctx, i, n); err != nil {
			s.failRedis(w, r, err)
			return
		}
		parts[i].More = st.Pending > int64(len(parts[i].Entries))
	}
	s.render(w, r, http.StatusOK, "pending", p.Name+": pending entries", struct {
		Pipeline string
		Count    int
		Parts    []pendingPartition
	}{p.Name, n, parts})
}

// deadLetterPage is what the dead-letter page shows.
type deadLetterPage struct {
	Pipeline, Stream string
	Total            int64
	Filter           Filter
	// Form are the filter's fields as typed, for the form.
	Form  url.Values
	Scan  Scan
	After string
	Count int
	// DryReplayURL and DryDeleteURL are the dry runs of the filter's set;
	// NextURL is the next page ("" on the last).
	DryReplayURL, DryDeleteURL, NextURL string
	CanDelete                           bool
	SharedWith                          []string
}

// deadLetters shows a page of the pipeline's dead letters that the
// filter selects, oldest first, each with its original fields and error.
// ?after= pages on from an id.
func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	p := s.pipeline(w, r)
	if p == nil {
		return
	}
	q := r.URL.Query()
	f, err := ParseFilter(q)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	n, ok := s.count(q)
	if !ok {
		s.fail(w, r, http.StatusBadRequest, "count: want 1 to "+strconv.Itoa(MaxPageSize))
		return
	}
	after := q.Get("after")
	if after != "" && !idRE.MatchString(after) {
		s.fail(w, r, http.StatusBadRequest, "after: want a stream id like 1700000000000-0")
		return
	}
	ctx := r.Context()
	total, _, err := p.Inspector.DeadLetterSpan(ctx)
	if err != nil {
		s.failRedis(w, r, err)
		return
	}
	sc, err := ScanDeadLetters(ctx, p.Inspector, p.Name, f, after, n, s.o.MaxScan)
	if err != nil {
		s.failRedis(w, r, err)
		return
	}
	pg := deadLetterPage{Pipeline: p.Name, Stream: p.Inspector.Options().DeadLetterStream, Total: total, Filter: f,
		Form: q, Scan: sc, After: after, Count: n, CanDelete: p.Delete != nil, SharedWith: p.SharedWith}
	base := "/pipelines/" + url.PathEscape(p.Name) + "/dead-letters"
	for _, a := range []struct {
		action string
		to     *string
	}{{actionReplay, &pg.DryReplayURL}, {actionDelete, &pg.DryDeleteURL}} {
		v := f.Values()
		v.Set("action", a.action)
		*a.to = base + "/dry-run?" + v.Encode()
	}
	if sc.Next != "" {
		next := f.Values()
		next.Set("after", sc.Next)
		if q.Get("count") != "" {
			next.Set("count", strconv.Itoa(n))
		}
		pg.NextURL = base + "?" + next.Encode()
	}
	s.render(w, r, http.StatusOK, "deadletters", p.Name+": dead letters", pg)
}

// isReply reports whether err is an error reply of Redis (NOPERM, say), as
// opposed to Redis being unreachable.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}
