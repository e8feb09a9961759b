// Package console is Eddy's web console: server-rendered pages that show
// what processor.Inspector reads of each pipeline (partitions with their
// owner, fencing token, lease, lag, pending entries and the oldest one's
// age; the live workers; the open windows and active alerts of analytics
// steps; the pending entries with their delivery counts and idle times;
// the dead letters, browsable and filtered by reason, key and time), and
// two actions on dead letters: replay and delete.
//
// # Safety
//
// The console is read-only unless Options.AdminToken is set. With it,
// an operator logs in (a form that sets an HttpOnly, SameSite=Strict
// cookie) and may replay or delete dead letters. Every POST carries a
// per-session CSRF token in a form field that must equal the one in the
// csrf cookie, and its Origin (or, without one, its Referer) must be the
// console's own host; anything else is refused with 403. A GET on an
// action answers 405. The admin token is at least MinAdminTokenLen bytes;
// login attempts are limited per remote address (429); a session carries
// its issue time under the HMAC and lasts SessionTTL. With
// Options.LoginToView (what cmd/eddy sets on a listen address other than
// loopback) every page needs the login.
//
// An action acts on exactly the dead letters the operator saw: a dry run
// (a GET, which changes nothing) lists the ids that the filter selects at
// that moment and carries them, signed, into the confirmation form; the
// operator types the count (or the action's name) to confirm; the action
// then reads each of those ids and acts on those still there, never on a
// new query that could take in dead letters added since. A form acts
// once: its signature covers a nonce with its issue time, remembered in
// memory once used (a second POST is 409) and refused after FormTTL; and
// processor.Replay appends a dead letter only if it removed it, so that
// replays from two consoles append it once. Every page and
// every scan is bounded (Options.PageSize, MaxScan, MaxAction), and
// html/template escapes everything shown.
//
// # What it does not own
//
// It reads Redis only through processor.Inspector, and deletes through
// the function each Pipeline is given; it opens no connection, reads no
// configuration and serves no listener: cmd/eddy mounts Handler on the
// http.addr listener of eddy run and eddy console. Import direction:
// cmd/eddy -> console -> processor.
package console
