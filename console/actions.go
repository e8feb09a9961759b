package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/processor"
)

// The actions on dead letters.
const (
	actionReplay = "replay"
	actionDelete = "delete"
)

// idRE is a stream entry id.
var idRE = regexp.MustCompile(`^[0-9]{1,20}-[0-9]{1,20}$`)

// dryRunShown bounds the dead letters a dry run lists (it carries every
// id it selected all the same).
const dryRunShown = 100

// dryRunPage is what a dry run shows.
type dryRunPage struct {
	Action, Pipeline string
	Filter           Filter
	// BackURL is the dead-letter page of the same filter.
	BackURL string
	Count   int
	IDs     string // comma-separated, for the form
	Sig     string
	Shown   []processor.DeadLetter
	// More is set when more dead letters match than one action takes;
	// Capped when the scan stopped at its bound on entries read.
	More, Capped bool
	MaxAction    int
	Examined     int
	// Timers counts the dead letters selected that are failed timer
	// firings, which have no entry to replay: a replay leaves them out.
	Timers     int
	SharedWith []string
}

// dryRun shows how many dead letters an action would act on, and which,
// changing nothing; for an operator logged in it adds the confirmation
// form, which carries exactly those ids, signed.
func (s *Server) dryRun(w http.ResponseWriter, r *http.Request) {
	p := s.pipeline(w, r)
	if p == nil {
		return
	}
	q := r.URL.Query()
	action := q.Get("action")
	if action != actionReplay && (action != actionDelete || p.Delete == nil) {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("action %q: want replay or delete", action))
		return
	}
	f, err := ParseFilter(q)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	sc, err := ScanDeadLetters(r.Context(), p.Inspector, p.Name, f, "", s.o.MaxAction+1, s.o.MaxScan)
	if err != nil {
		s.failRedis(w, r, err)
		return
	}
	pg := dryRunPage{Action: action, Pipeline: p.Name, Filter: f, Capped: sc.Capped,
		MaxAction: s.o.MaxAction, Examined: sc.Examined}
	pg.BackURL = "/pipelines/" + url.PathEscape(p.Name) + "/dead-letters"
	if v := f.Values(); len(v) > 0 {
		pg.BackURL += "?" + v.Encode()
	}
	if action == actionReplay {
		pg.SharedWith = p.SharedWith
	}
	var ids []string
	for _, d := range sc.Matched {
		if action == actionReplay && d.Timer != "" {
			pg.Timers++
			continue
		}
		if len(ids) == s.o.MaxAction {
			pg.More = true
			break
		}
		ids = append(ids, d.ID)
		if len(pg.Shown) < dryRunShown {
			pg.Shown = append(pg.Shown, d)
		}
	}
	pg.Count, pg.IDs, pg.Sig = len(ids), strings.Join(ids, ","), s.sign(action, p.Name, ids, s.newNonce())
	s.render(w, r, http.StatusOK, "dryrun", p.Name+": "+action+" (dry run)", pg)
}

// sign is the signature a dry run gives its id set, which the action
// checks: the set cannot be changed between the two. It is
// "<nonce>.<hmac>", the nonce (newNonce) making each form single-use.
func (s *Server) sign(action, pipeline string, ids []string, nonce string) string {
	m := hmac.New(sha256.New, s.key)
	fmt.Fprintf(m, "%s\n%s\n%s\n%s", action, pipeline, strings.Join(ids, ","), nonce)
	return nonce + "." + hex.EncodeToString(m.Sum(nil))
}

// checkSig checks a form's signature of its action, pipeline and ids and
// returns its nonce; "" when the signature does not match or the form is
// older than FormTTL.
func (s *Server) checkSig(sig, action, pipeline string, ids []string) string {
	i := strings.LastIndexByte(sig, '.')
	if i < 0 {
		return ""
	}
	nonce := sig[:i]
	if !hmac.Equal([]byte(sig), []byte(s.sign(action, pipeline, ids, nonce))) {
		return ""
	}
	issued, ok := nonceTime(nonce)
	if age := s.o.Now().Sub(issued); !ok || age > FormTTL || age < -time.Minute {
		return ""
	}
	return nonce
}

// resultPage is what an action shows once done.
type resultPage struct {
	Action, Pipeline string
	// Done are the ids acted on; Missing those no longer in the stream
	// (replayed or deleted since the dry run).
	Done, Missing []string
	Err           string
}

// act returns the handler of an action. It acts on the ids its dry run
// carried, once the signature matches and the operator typed the count
// (or the action's name); each id is read again and only those still in
// the dead-letter stream are acted on.
func (s *Server) act(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := s.pipeline(w, r)
		if p == nil {
			return
		}
		if action == actionDelete && p.Delete == nil {
			s.fail(w, r, http.StatusBadRequest, "delete is not offered for pipeline "+p.Name)
			return
		}
		form := r.PostForm
		ids, err := parseIDs(form.Get("ids"), s.o.MaxAction)
		if err != nil {
			s.fail(w, r, http.StatusBadRequest, err.Error())
			return
		}
		nonce := s.checkSig(form.Get("sig"), action, p.Name, ids)
		if nonce == "" {
			s.fail(w, r, http.StatusBadRequest, "the ids do not match their dry run, or the dry run is over "+FormTTL.String()+" old: do the dry run again")
			return
		}
		if c := strings.TrimSpace(form.Get("confirm")); c != strconv.Itoa(len(ids)) && c != action {
			s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("not confirmed: type %d or %q; nothing was done", len(ids), action))
			return
		}
		if action == actionReplay && len(p.SharedWith) > 0 && form.Get("force") != "on" {
			s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("pipelines %s also read this input stream without dedupe: tick the box if they should see these events again; nothing was done",
				strings.Join(p.SharedWith, ", ")))
			return
		}
		if !s.nonces.claim(nonce, s.o.Now()) {
			s.fail(w, r, http.StatusConflict, "this confirmation was already used (a second click, or another tab): nothing more was done; do the dry run again to see what is left")
			return
		}
		res := resultPage{Action: action, Pipeline: p.Name}
		found, err := s.reread(r, p, ids, &res)
		if err == nil {
			err = s.apply(r, p, action, found, &res)
		}
		s.log.Info("console_action", zap.String("action", action), zap.String("pipeline", p.Name),
			zap.Int("done", len(res.Done)), zap.Int("missing", len(res.Missing)), zap.String("remote", r.RemoteAddr), zap.Error(err))
		status := http.StatusOK
		if err != nil {
			res.Err, status = err.Error(), http.StatusBadGateway
		}
		s.render(w, r, status, "result", p.Name+": "+action, res)
	}
}

// reread reads each id again, returning the dead letters of p still in
// its stream; the others go to res.Missing.
func (s *Server) reread(r *http.Request, p *Pipeline, ids []string, res *resultPage) ([]processor.DeadLetter, error) {
	var found []processor.DeadLetter
	for _, id := range ids {
		dls, _, _, err := p.Inspector.DeadLetters(r.Context(), idBefore(id), 1)
		if err != nil {
			return found, err
		}
		if len(dls) == 0 || dls[0].ID != id || (dls[0].Pipeline != "" && dls[0].Pipeline != p.Name) {
			res.Missing = append(res.Missing, id)
			continue
		}
		found = append(found, dls[0])
	}
	return found, nil
}

// apply replays or deletes the dead letters found, recording in res.Done
// those it has acted on.
func (s *Server) apply(r *http.Request, p *Pipeline, action string, found []processor.DeadLetter, res *resultPage) error {
	if len(found) == 0 {
		return nil
	}
	if action == actionDelete {
		ids := make([]string, len(found))
		for i, d := range found {
			ids[i] = d.ID
		}
		n, err := p.Delete(r.Context(), ids)
		if err != nil {
			return err
		}
		if n != int64(len(ids)) { // another deleted some in between: say so, honestly
			return fmt.Errorf("deleted %d of %d dead letters; the others went in the meantime", n, len(ids))
		}
		res.Done = ids
		return nil
	}
	for _, d := range found {
		_, err := p.Inspector.Replay(r.Context(), d)
		if errors.Is(err, processor.ErrDeadLetterGone) { // replayed or deleted since reread
			res.Missing = append(res.Missing, d.ID)
			continue
		}
		if err != nil {
			return err
		}
		res.Done = append(res.Done, d.ID)
	}
	return nil
}

// parseIDs reads a dry run's comma-separated ids: 1 to max stream ids,
// each once.
func parseIDs(v string, max int) ([]string, error) {
	if v == "" {
		return nil, fmt.Errorf("no dead letters to act on")
	}
	ids := strings.Split(v, ",")
	if len(ids) > max {
		return nil, fmt.Errorf("%d ids: at most %d per action", len(ids), max)
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !idRE.MatchString(id) || seen[id] {
			return nil, fmt.Errorf("ids: %q is not a stream id, or given twice", id)
		}
		seen[id] = true
	}
	return ids, nil
}

// idBefore returns the stream id just before id (which idRE accepts), so
// that reading after it starts at id; "" for 0-0.
func idBefore(id string) string {
	msText, seqText, _ := strings.Cut(id, "-")
	ms, _ := strconv.ParseUint(msText, 10, 64)
	seq, _ := strconv.ParseUint(seqText, 10, 64)
	switch {
	case seq > 0:
		return fmt.Sprintf("%d-%d", ms, seq-1)
	case ms > 0:
		return fmt.Sprintf("%d-%d", ms-1, uint64(math.MaxUint64))
	}
	return ""
}
