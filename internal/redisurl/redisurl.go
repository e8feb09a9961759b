// Package redisurl parses Redis URLs and masks the secrets in them. It is
// the one place that does either: every message, log line and error of
// Eddy that quotes a Redis URL quotes Redact's form of it, and every URL is
// parsed here, so that the password never reaches a parser whose error
// could echo it.
//
// A URL is redis://[user[:password]@]host:port[/db][?option=value&…], or
// rediss://… for TLS; with addr= options (host:port each) it names Redis
// Cluster seeds. The credentials run from after "://" to the last "@" of the
// URL; an "@" anywhere else (a query value) must be written %40, and a "/",
// "?" or "#" in the user or password %2F, %3F, %23.
//
// It owns no connection and starts nothing. Import direction: pipelines and
// cmd/eddy -> redisurl -> go-redis.
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Mask replaces a password, or the value of a query option whose name
// says it is secret, in what Redact returns.
const Mask = "xxxxx"

// Error is a URL that does not parse. URL is already redacted; Err says
// why, and holds no part of the credentials.
type Error struct {
	URL string
	Err error
}

func (e *Error) Error() string { return "redis url " + strconv.Quote(e.URL) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Redact returns raw with the password of its credentials replaced by
// Mask (the user is kept) and so is the value of every query option whose
// name says it is secret (password, pass, pwd, secret, token, auth, key).
// It takes any string, a URL that does not parse too, and then masks more
// rather than less: everything from the first ":" of the credentials to
// the last "@".
func Redact(raw string) string {
	scheme, rest := splitScheme(raw)
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, _, hasPass := strings.Cut(rest[:at], ":")
		if hasPass {
			user += ":" + Mask
		}
		rest = user + rest[at:]
	}
	return scheme + redactQuery(rest)
}

// splitScheme splits "scheme://rest" after "://"; with none, scheme is "".
func splitScheme(raw string) (scheme, rest string) {
	if i := strings.Index(raw, "://"); i >= 0 {
		return raw[:i+3], raw[i+3:]
	}
	return "", raw
}

// redactQuery masks the values of secret query options in s, the part of a
// URL after "://", which it does not parse (it may not parse).
func redactQuery(s string) string {
	q := strings.IndexByte(s, '?')
	if q < 0 {
		return s
	}
	query, frag, hasFrag := strings.Cut(s[q+1:], "#")
	params := strings.Split(query, "&")
	for i, p := range params {
		if name, _, ok := strings.Cut(p, "="); ok && secretOption(name) {
			params[i] = name + "=" + Mask
		}
	}
	out := s[:q+1] + strings.Join(params, "&")
	if hasFrag {
		out += "#" + frag
	}
	return out
}

// secretOption reports whether a query option of this name holds a secret.
func secretOption(name string) bool {
	name = strings.ToLower(name)
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	for _, s := range []string{"pass", "pwd", "secret", "token", "auth", "key"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// RedactText redacts every Redis URL (redis://, rediss://, unix://) in s, a
// message that may quote one: each runs to the next space or quote.
func RedactText(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		start := i
		for start > 0 && isSchemeByte(s[start-1]) {
			start--
		}
		end := i + 3
		for end < len(s) && !strings.ContainsRune(" \t\r\n\"'`", rune(s[end])) {
			end++
		}
		b.WriteString(s[:start])
		b.WriteString(Redact(s[start:end]))
		s = s[end:]
	}
}

func isSchemeByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
}

// creds are the credentials cut off a URL, decoded.
type creds struct {
	user, password string
}

// cut splits raw into its credentials and the URL without them, which is
// what go-redis gets to parse, with the values of secret query options
// masked too (go-redis knows no option of such a name: it rejects them by
// name). Its errors quote no part of the credentials.
func cut(raw string) (creds, string, error) {
	scheme, rest := splitScheme(raw)
	at := strings.LastIndexByte(rest, '@')
	switch {
	case scheme == "" && at >= 0:
		return creds{}, "", errors.New("want redis://[user:password@]host:port or rediss://…")
	case at < 0:
		return creds{}, scheme + redactQuery(rest), nil
	}
	info := rest[:at]
	if strings.ContainsAny(info, "/?#") {
		return creds{}, "", errors.New(`the part before the last "@" is not user:password: write a "/", "?" or "#" in the user or password as %2F, %3F, %23, and an "@" after the host as %40`)
	}
	user, pass, _ := strings.Cut(info, ":")
	var c creds
	var err error
	if c.user, err = url.PathUnescape(user); err != nil {
		return creds{}, "", errors.New("the user is not valid percent-encoding")
	}
	if c.password, err = url.PathUnescape(pass); err != nil {
		return creds{}, "", errors.New("the password is not valid percent-encoding")
	}
	return c, scheme + redactQuery(rest[at+1:]), nil
}

// fail is the Error for raw. A *url.Error from go-redis's parser repeats
// the URL it parsed (credentials cut off, but secret query options in it):
// keep only its cause.
func fail(raw string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &Error{URL: Redact(raw), Err: errors.New(RedactText(err.Error()))}
}

// IsCluster reports whether raw names Redis Cluster seeds: it has addr=
// query options. A URL that does not parse is not.
func IsCluster(raw string) bool {
	_, rest, err := cut(raw)
	if err != nil {
		return false
	}
	u, err := url.Parse(rest)
	return err == nil && u.Query().Has("addr")
}

// ParseURL parses the URL of one server as redis.ParseURL does (user and
// password from the credentials, TLS for rediss://, options from the
// query), but its error, an *Error, never holds the password.
func ParseURL(raw string) (*redis.Options, error) {
	c, rest, err := cut(raw)
	if err != nil {
		return nil, &Error{URL: Redact(raw), Err: err}
	}
	opt, err := redis.ParseURL(rest)
	if err != nil {
		return nil, fail(raw, err)
	}
	opt.Username, opt.Password = c.user, c.password
	return opt, nil
}

// ParseClusterURL parses the URL of Redis Cluster seeds (the host, and
// each addr= option) as redis.ParseClusterURL does, but its error, an
// *Error, never holds the password.
func ParseClusterURL(raw string) (*redis.ClusterOptions, error) {
	c, rest, err := cut(raw)
	if err != nil {
		return nil, &Error{URL: Redact(raw), Err: err}
	}
	opt, err := redis.ParseClusterURL(rest)
	if err != nil {
		return nil, fail(raw, err)
	}
	opt.Username, opt.Password = c.user, c.password
	return opt, nil
}

// ClusterForm is the URL that names Redis Cluster seeds for a URL of one
// of its nodes: scheme, credentials (redacted) and host of raw, then an
// addr= option for each of others, and no database. It is what an error
// tells the user to give instead.
func ClusterForm(raw string, others []string) string {
	scheme, rest := splitScheme(raw)
	if scheme == "" {
		scheme = "redis://"
	}
	creds := ""
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		creds, rest = rest[:at+1], rest[at+1:]
	}
	host := rest
	if i := strings.IndexAny(host, "/?#"); i >= 0 {
		host = host[:i]
	}
	var b strings.Builder
	b.WriteString(Redact(scheme + creds + host))
	for i, a := range others {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		fmt.Fprintf(&b, "addr=%s", a)
	}
	return b.String()
}
