package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/eddy-streams/eddy/internal/secret"
	"github.com/eddy-streams/eddy/pipelines"
)

// token is one bearer token of the HTTP source. Only the SHA-256 of its
// secret is kept: requests are compared with it in constant time, and the
// secret itself is in no field that a log or a panic could print.
type token struct {
	name      string
	digest    [sha256.Size]byte
	pipelines map[string]bool
	limiter   *rate.Limiter // nil: no rate limit
	burst     int
}

// loadTokens reads the secret of every token of s, from its environment
// variable (through lookupEnv) or its file. An error names the token and
// the variable or file, never the secret.
func loadTokens(s *pipelines.HTTPSource, lookupEnv func(string) (string, bool)) ([]*token, error) {
	if len(s.Tokens) == 0 {
		return nil, errors.New("sources.http.tokens: at least one token is required: without one every request would be refused")
	}
	var out []*token
	var errs []error
	owner := map[[sha256.Size]byte]string{}
	for _, name := range slices.Sorted(maps.Keys(s.Tokens)) {
		tc := s.Tokens[name]
		path := "sources.http.tokens." + name
		if tc.Env == "" && tc.File == "" {
			errs = append(errs, fmt.Errorf("%s: neither env nor file is set", path))
			continue
		}
		value, err := secret.ReadWith(lookupEnv, tc.Env, tc.File)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		t := &token{name: name, digest: sha256.Sum256([]byte(value)), pipelines: map[string]bool{}, burst: tc.Burst}
		if other, dup := owner[t.digest]; dup {
			errs = append(errs, fmt.Errorf("%s: has the same secret as token %s: give each token its own", path, other))
			continue
		}
		owner[t.digest] = name
		for _, p := range tc.Pipelines {
			t.pipelines[p] = true
		}
		if tc.Rate > 0 {
			t.limiter = rate.NewLimiter(rate.Limit(tc.Rate), max(tc.Burst, 1))
		}
		out = append(out, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// match returns the token whose secret is presented, or nil. It compares
// the presented secret's digest with every token's, in constant time and
// without stopping at a match, so the time taken tells nothing of which
// token, or how much of one, matched.
func match(tokens []*token, presented string) *token {
	d := sha256.Sum256([]byte(presented))
	var found *token
	for _, t := range tokens {
		if subtle.ConstantTimeCompare(d[:], t.digest[:]) == 1 {
			found = t
		}
	}
	return found
}

// bearer returns the credentials of an "Authorization: Bearer <token>"
// header value (the scheme in any case), and whether there are any.
func bearer(header string) (string, bool) {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}

// allow takes n events from the token's rate. It returns 0 when they may
// go now, else how long the client should wait before trying again (and
// takes nothing). n over the token's burst can never go: ok is false.
func (t *token) allow(now time.Time, n int) (wait time.Duration, ok bool) {
	if t.limiter == nil {
		return 0, true
	}
	if n > t.burst {
		return 0, false
	}
	r := t.limiter.ReserveN(now, n)
	if !r.OK() {
		return 0, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, true
	}
	return 0, true
}
