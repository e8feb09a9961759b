package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/eddy-streams/eddy/processor"
)

// Defaults of Options.
const (
	// DefaultPageSize is how many dead letters or pending entries a page
	// shows when Options.PageSize is 0.
	DefaultPageSize = 50
	// MaxPageSize bounds the page size a request may ask for (?count=).
	MaxPageSize = 500
	// DefaultMaxScan is how many dead-letter entries one request reads at
	// most, when Options.MaxScan is 0.
	DefaultMaxScan = 10_000
	// DefaultMaxAction is how many dead letters one replay or delete acts
	// on at most, when Options.MaxAction is 0.
	DefaultMaxAction = 1_000
	// maxForm bounds the body of a POST.
	maxForm = 1 << 20
)

// Pipeline is one pipeline the console shows.
type Pipeline struct {
	// Name is the pipeline's name; it appears in the console's paths.
	Name string
	// Inspector reads the pipeline's state. Required.
	Inspector *processor.Inspector
	// Current, when set, returns the Inspector of the read-model version
	// readers read now (eddy rebuild) and that version: the partitions,
	// workers and pending entries shown are that version's group's. Nil:
	// Inspector's, version 1.
	Current func(ctx context.Context) (*processor.Inspector, int, error)
	// Analytics are the pipeline's analytics steps, whose open windows,
	// sessions, funnels or active alerts the overview shows.
	Analytics []AnalyticsStep
	// Delete deletes the dead letters of the given ids from the
	// pipeline's dead-letter stream and returns how many it deleted. Nil:
	// the console offers no delete.
	Delete func(ctx context.Context, ids []string) (int64, error)
	// SharedWith names the other pipelines that read the same input
	// stream without dedupe: a replayed event reaches them too, so a
	// replay must also be confirmed for them.
	SharedWith []string
}

// AnalyticsStep is an analytics step of a pipeline and the name of the
// gauge (Message.GaugeAdd) that counts what it holds open.
type AnalyticsStep struct {
	Name, Gauge string
}

// Options configure a Server.
type Options struct {
	// Pipelines are the pipelines shown, in this order; at least one.
	Pipelines []Pipeline
	// AdminToken, when set, enables replay and delete for whoever logs in
	// with it; at least MinAdminTokenLen bytes. Default (""): the console
	// is read-only.
	AdminToken string
	// LoginToView, when set, makes every page but the login page need the
	// admin login: for a console reachable from other machines, since the
	// pages show dead letters' payloads. It needs AdminToken. Default
	// false: anyone who reaches the console may view it.
	LoginToView bool
	// Logger logs every action taken (nil: none).
	Logger *zap.Logger
	// PageSize is the default number of rows per page. Default
	// DefaultPageSize; at most MaxPageSize.
	PageSize int
	// MaxScan bounds how many dead-letter entries one request reads.
	// Default DefaultMaxScan.
	MaxScan int
	// MaxAction bounds how many dead letters one action acts on. Default
	// DefaultMaxAction.
	MaxAction int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Server serves the console's pages. It is an http.Handler; its paths
// are "/", "/pipelines/<name>/…" and "/console/…".
type Server struct {
	o     Options
	byNam map[string]*Pipeline
	mux   *http.ServeMux
	pages map[string]*template.Template
	// key signs the id sets that dry runs hand to their confirmations.
	key []byte
	log *zap.Logger
	// nonces are those of the confirmation forms used; logins limits
	// login attempts per remote address.
	nonces nonceSet
	logins loginLimiter
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New checks o, fills in its defaults and returns the console.
func New(o Options) (*Server, error) {
	if len(o.Pipelines) == 0 {
		return nil, errors.New("console: no pipelines")
	}
	switch {
	case o.PageSize == 0:
		o.PageSize = DefaultPageSize
	case o.PageSize < 1 || o.PageSize > MaxPageSize:
		return nil, fmt.Errorf("console: page size %d: want 1 to %d", o.PageSize, MaxPageSize)
	}
	if o.MaxScan == 0 {
		o.MaxScan = DefaultMaxScan
	}
	if o.MaxAction == 0 {
		o.MaxAction = DefaultMaxAction
	}
	if o.MaxScan < 1 || o.MaxAction < 1 {
		return nil, fmt.Errorf("console: max scan %d, max action %d: must be at least 1", o.MaxScan, o.MaxAction)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LoginToView && o.AdminToken == "" {
		return nil, errors.New("console: login to view needs an admin token")
	}
	if o.AdminToken != "" && len(o.AdminToken) < MinAdminTokenLen {
		return nil, fmt.Errorf("console: admin token of %d bytes: want at least %d", len(o.AdminToken), MinAdminTokenLen)
	}
	s := &Server{o: o, byNam: map[string]*Pipeline{}, log: o.Logger, key: make([]byte, 32)}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if _, err := rand.Read(s.key); err != nil {
		return nil, fmt.Errorf("console: signing key: %w", err)
	}
	for i := range s.o.Pipelines {
		p := &s.o.Pipelines[i]
		if p.Inspector == nil {
			return nil, fmt.Errorf("console: pipeline %q: no inspector", p.Name)
		}
		if _, dup := s.byNam[p.Name]; dup || p.Name == "" {
			return nil, fmt.Errorf("console: pipeline name %q: empty or given twice", p.Name)
		}
		s.byNam[p.Name] = p
	}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// live returns the Inspector of p's current read-model version, and the
// version.
func (p *Pipeline) live(ctx context.Context) (*processor.Inspector, int, error) {
	if p.Current == nil {
		return p.Inspector, 1, nil
	}
	return p.Current(ctx)
}

// ReadOnly reports whether the console offers no actions (no admin token).
func (s *Server) ReadOnly() bool { return s.o.AdminToken == "" }

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", s.overview)
	m.HandleFunc("GET /pipelines/{name}/pending", s.pending)
	m.HandleFunc("GET /pipelines/{name}/dead-letters", s.deadLetters)
	m.HandleFunc("GET /pipelines/{name}/dead-letters/dry-run", s.dryRun)
	m.HandleFunc("POST /pipelines/{name}/dead-letters/replay", s.guard(s.act(actionReplay)))
	m.HandleFunc("POST /pipelines/{name}/dead-letters/delete", s.guard(s.act(actionDelete)))
	m.HandleFunc("GET /console/login", s.loginPage)
	m.HandleFunc("POST /console/login", s.checkPost(s.login))
	m.HandleFunc("POST /console/logout", s.checkPost(s.logout))
	s.mux = m
}

// ServeHTTP serves the console, with headers that forbid scripts, frames
// and forms to other sites.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if s.o.LoginToView && !s.isAdmin(r) && !openPath(r.URL.Path) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			http.Redirect(w, r, "/console/login", http.StatusSeeOther)
			return
		}
		s.refuse(w, r, "log in with the admin token first")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// openPath reports whether path is served without a login when
// Options.LoginToView is set: the login page, logout and the static files.
func openPath(path string) bool {
	return path == "/console/login" || path == "/console/logout" || strings.HasPrefix(path, "/console/static/")
}

// Routes are the patterns to mount on a shared http.ServeMux: one that
// hands every path the mux does not serve otherwise to the console.
func (s *Server) Routes() map[string]http.Handler {
	return map[string]http.Handler{"/": s}
}

// pipeline returns the pipeline named in the path, or answers 404.
func (s *Server) pipeline(w http.ResponseWriter, r *http.Request) *Pipeline {
	p := s.byNam[r.PathValue("name")]
	if p == nil {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("no pipeline %q", r.PathValue("name")))
	}
	return p
}

func (s *Server) parseTemplates() error {
	funcs := template.FuncMap{
		"dur":   fmtDuration,
		"time":  fmtTime,
		"join":  strings.Join,
		"pairs": pairs,
		"ago":   func(t time.Time) string { return fmtDuration(s.o.Now().Sub(t)) + " ago" },
	}
	s.pages = map[string]*template.Template{}
	for _, page := range []string{"overview", "pending", "deadletters", "dryrun", "result", "login", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return fmt.Errorf("console: template %s: %w", page, err)
		}
		s.pages[page] = t
	}
	return nil
}

// page is what every template gets: the page's own data and what the
// layout needs.
type page struct {
	Title    string
	CSRF     string
	ReadOnly bool
	Admin    bool
	Data     any
}

// render executes a page's template into a buffer first, so that a
// template error is a clean 500, not half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	pg := page{Title: title, CSRF: s.csrfToken(w, r), ReadOnly: s.ReadOnly(), Admin: s.isAdmin(r), Data: data}
	var b bytes.Buffer
	if err := s.pages[name].Execute(&b, pg); err != nil {
		s.log.Error("console_render_failed", zap.String("page", name), zap.Error(err))
		http.Error(w, "console: cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fail answers with an error page.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, r, status, "error", http.StatusText(status), struct {
		Status  int
		Message string
	}{status, msg})
}

// failRedis answers 502 for an error reading or writing Redis.
func (s *Server) failRedis(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Warn("console_redis_failed", zap.String("path", r.URL.Path), zap.Error(err))
	s.fail(w, r, http.StatusBadGateway, err.Error())
}

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// field is one field of an entry.
type field struct{ Name, Value string }

// pairs turns a flat name, value list into fields.
func pairs(kv []string) []field {
	out := make([]field, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, field{kv[i], kv[i+1]})
	}
	return out
}
