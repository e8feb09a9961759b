package main

import (
	"strings"

	"github.com/eddy-streams/eddy/internal/redisurl"
)

// minSecretLen is the shortest password redactor masks wherever it
// appears. A shorter one would garble every message that happens to hold
// its letters; none reaches a message anyway, as redisurl cuts the
// credentials off a URL before anything parses it. This is the second
// line of defence.
const minSecretLen = 4

// redactor masks secrets in what eddy prints about Redis: every Redis URL
// (redisurl.RedactText: the password and secret query options) and every
// password it knows of (from the URL, redis.password, password_env or
// password_file), wherever it appears. The zero value masks URLs only.
// Every error openRedis, ping and wait return, every log line they write
// and go-redis's own log messages go through one.
type redactor struct {
	secrets []string
}

// add makes r mask s too.
func (r *redactor) add(s string) {
	if len(s) >= minSecretLen {
		r.secrets = append(r.secrets, s)
	}
}

// text returns s with every secret masked.
func (r *redactor) text(s string) string {
	if r == nil {
		return redisurl.RedactText(s)
	}
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, redisurl.Mask)
	}
	return redisurl.RedactText(s)
}

// err returns err with its message masked, still wrapping err so that
// errors.Is and errors.As see what it wraps (a usageError, a Redis error).
func (r *redactor) err(err error) error {
	if err == nil {
		return nil
	}
	msg := r.text(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactedError is an error whose message had secrets masked.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
