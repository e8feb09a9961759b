package ingest

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/eddy-streams/eddy/internal/redistest"
)

// partialPipeline is a go-redis hook that lets the first n commands of a
// pipeline of XADDs through to Redis and fails the rest, as a Redis that goes away
// in the middle of a request's pipelined XADDs does.
type partialPipeline struct{ n int }

var errGone = errors.New("connection reset: Redis went away mid-pipeline")

func (partialPipeline) DialHook(next redis.DialHook) redis.DialHook { return next }

func (partialPipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (h partialPipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) <= h.n || cmds[0].Name() != "xadd" { // the backpressure probe goes through
			return next(ctx, cmds)
		}
		if err := next(ctx, cmds[:h.n]); err != nil {
			return err
		}
		for _, c := range cmds[h.n:] {
			c.SetErr(errGone)
		}
		return errGone
	}
}

// A 503 after Redis took some of the request's events says that some may
// have been appended, so that the client resends the whole request; it
// never claims that none was.
func TestHTTPPartialAppendIs503MaybeAppended(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	rdb.AddHook(partialPipeline{n: 2})
	s := startSourceOn(t, srv, rdb, "")

	body := "{\"user_id\":\"a\"}\n{\"user_id\":\"b\"}\n{\"user_id\":\"c\"}\n{\"user_id\":\"d\"}\n"
	status, hdr, a := s.post(t, "clicks", testEnv["WEB_TOKEN"], []byte(body), "Content-Type", ContentTypeNDJSON)
	if n := s.streamLen(t, "clicks"); n != 2 {
		t.Fatalf("%d entries in Redis, want the 2 the hook let through (the test's premise)", n)
	}
	if status != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "2" || a.Accepted != 0 || len(a.Entries) != 0 {
		t.Errorf("partial append: %d Retry-After %q %+v, want 503, Retry-After 2, nothing reported accepted", status, hdr.Get("Retry-After"), a)
	}
	if strings.Contains(a.Error, "none was appended") || strings.Contains(a.Error, "nothing was appended") ||
		!strings.Contains(a.Error, "some may have been appended before it failed: resend the whole request (a pipeline with dedupe drops the copies)") {
		t.Errorf("partial append: error %q, want it to say that some may have been appended and to resend the whole request", a.Error)
	}
}
