package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// SessionTTL is how long an admin session lasts: a login older than this
// is refused and the operator logs in again.
const SessionTTL = 12 * time.Hour

// MinAdminTokenLen is the shortest admin token New accepts, in bytes.
const MinAdminTokenLen = 16

// The console's cookies. Both are HttpOnly and SameSite=Strict.
const (
	// csrfCookie holds the session's CSRF token, which every form also
	// carries in its csrfField.
	csrfCookie = "eddy_console_csrf"
	csrfField  = "csrf"
	// adminCookie holds the admin session: a value derived from the admin
	// token (adminSession), never the token itself.
	adminCookie = "eddy_console_admin"
)

// csrfToken returns the request's CSRF token, setting a new one in a
// cookie when it has none.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24+)
	tok := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: tok, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	return tok
}

// adminSession is the admin cookie's value for a session opened at
// issued: "<issued unix seconds>.<HMAC of a fixed text and the time under
// the admin token>". It changes with the token; it does not reveal it.
func (s *Server) adminSession(issued time.Time) string {
	at := strconv.FormatInt(issued.Unix(), 10)
	m := hmac.New(sha256.New, []byte(s.o.AdminToken))
	m.Write([]byte("eddy console admin session\n" + at))
	return at + "." + hex.EncodeToString(m.Sum(nil))
}

// isAdmin reports whether the request comes from a logged-in operator
// whose session is at most SessionTTL old.
func (s *Server) isAdmin(r *http.Request) bool {
	if s.ReadOnly() {
		return false
	}
	c, err := r.Cookie(adminCookie)
	if err != nil {
		return false
	}
	at, _, ok := strings.Cut(c.Value, ".")
	sec, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil {
		return false
	}
	issued := time.Unix(sec, 0)
	if age := s.o.Now().Sub(issued); age > SessionTTL || age < -time.Minute {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.adminSession(issued))) == 1
}

// sameOrigin reports whether a POST comes from the console's own pages:
// its Origin header (or, without one, its Referer) names the request's
// host, and Sec-Fetch-Site, when sent, says same-origin.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	from := r.Header.Get("Origin")
	if from == "" || from == "null" {
		from = r.Header.Get("Referer")
	}
	u, err := url.Parse(from)
	return err == nil && u.Host != "" && u.Host == r.Host
}

// checkPost wraps a POST handler: the body is bounded, the request must
// come from the console's own pages (sameOrigin) and carry the session's
// CSRF token in its form; otherwise 403.
func (s *Server) checkPost(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			s.fail(w, r, http.StatusBadRequest, "cannot read the form: "+err.Error())
			return
		}
		if !sameOrigin(r) {
			s.refuse(w, r, "the request does not come from this console (Origin or Referer)")
			return
		}
		c, err := r.Cookie(csrfCookie)
		sent := r.PostForm.Get(csrfField)
		if err != nil || sent == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(sent)) != 1 {
			s.refuse(w, r, "missing or wrong CSRF token: reload the page and try again")
			return
		}
		h(w, r)
	}
}

// guard is checkPost for an action: it also needs an admin token
// configured and the operator logged in with it; otherwise 403.
func (s *Server) guard(h http.HandlerFunc) http.HandlerFunc {
	return s.checkPost(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.ReadOnly():
			s.refuse(w, r, "the console is read-only: no admin token is configured (console.admin_token_env or console.admin_token_file)")
		case !s.isAdmin(r):
			s.refuse(w, r, "log in with the admin token first")
		default:
			h(w, r)
		}
	})
}

// refuse answers 403 and logs why.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, why string) {
	s.log.Warn("console_refused", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr), zap.String("why", why))
	s.fail(w, r, http.StatusForbidden, why)
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", "Log in", nil)
}

// login checks the admin token typed and, when it is right, sets the
// admin cookie and goes back to the overview.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.ReadOnly() {
		s.refuse(w, r, "the console is read-only: no admin token is configured")
		return
	}
	if !s.logins.allow(remoteHost(r), s.o.Now()) {
		s.log.Warn("console_login_limited", zap.String("remote", r.RemoteAddr))
		w.Header().Set("Retry-After", strconv.Itoa(int(loginEvery/time.Second)))
		s.fail(w, r, http.StatusTooManyRequests, "too many login attempts from this address: wait a minute")
		return
	}
	tok := r.PostForm.Get("token")
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.o.AdminToken)) != 1 {
		s.refuse(w, r, "wrong admin token")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: s.adminSession(s.o.Now()), Path: "/",
		MaxAge: int(SessionTTL / time.Second), HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	s.log.Info("console_login", zap.String("remote", r.RemoteAddr))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
