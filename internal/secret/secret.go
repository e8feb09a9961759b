// Package secret reads a secret (a password, a bearer token) from an
// environment variable or from a file, the two places Eddy's config lets
// one be kept: never the config file itself.
//
// It owns only that reading and its error texts, which name the variable
// or the file and never the value. It does not know the config's paths:
// callers prefix its errors with theirs ("sources.http.tokens.web: …").
// Import direction: ingest, cmd/eddy -> secret; it imports nothing of
// Eddy's.
package secret

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrNone is returned when neither a variable nor a file is named.
var ErrNone = errors.New("neither an environment variable nor a file is named")

// Read returns the secret in the environment variable envName or, when
// envName is "", in the file fileName; see ReadWith.
func Read(envName, fileName string) (string, error) {
	return ReadWith(os.LookupEnv, envName, fileName)
}

// ReadWith is Read with the environment looked up through lookupEnv (nil:
// os.LookupEnv), for tests.
//
// A variable's value is taken as it is; a file's content loses one
// trailing newline ("\n" or "\r\n"), as an editor or echo leaves one. A
// variable unset or empty, a file that cannot be read or is empty, is an
// error that names the variable or the file, never a value. With both
// names "" it returns ErrNone.
func ReadWith(lookupEnv func(string) (string, bool), envName, fileName string) (string, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	switch {
	case envName != "":
		v, ok := lookupEnv(envName)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is unset or empty", envName)
		}
		return v, nil
	case fileName != "":
		b, err := os.ReadFile(fileName)
		if err != nil {
			return "", fmt.Errorf("read the secret: %w", err) // an *os.PathError names the file
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return "", fmt.Errorf("file %s is empty", fileName)
		}
		return v, nil
	}
	return "", ErrNone
}
