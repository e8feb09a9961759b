package secret

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestReadWith(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := map[string]string{"SET": "s3cret\n", "EMPTY": ""}
	lookup := func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	plain, crlf, two := file("plain", "hunter22\n"), file("crlf", "hunter22\r\n"), file("two", "hunter22\n\n")
	bare, empty, onlyNL := file("bare", "hunter22"), file("empty", ""), file("nl", "\n")
	missing := filepath.Join(dir, "missing")
	for _, tt := range []struct {
		env, file string
		want      string
		wantErr   string
	}{
		{env: "SET", want: "s3cret\n"}, // a variable is taken as it is
		{env: "SET", file: plain, want: "s3cret\n"},
		{env: "UNSET", wantErr: "environment variable UNSET is unset or empty"},
		{env: "EMPTY", wantErr: "environment variable EMPTY is unset or empty"},
		{file: plain, want: "hunter22"},
		{file: crlf, want: "hunter22"},
		{file: two, want: "hunter22\n"}, // one newline only
		{file: bare, want: "hunter22"},
		{file: empty, wantErr: "file " + empty + " is empty"},
		{file: onlyNL, wantErr: "file " + onlyNL + " is empty"},
		{file: missing, wantErr: "read the secret: open " + missing + ": no such file or directory"},
		{wantErr: ErrNone.Error()},
	} {
		got, err := ReadWith(lookup, tt.env, tt.file)
		switch {
		case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
			t.Errorf("ReadWith(%q, %q) = %q, %v, want error %q", tt.env, tt.file, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("ReadWith(%q, %q) = %q, %v, want %q", tt.env, tt.file, got, err, tt.want)
		}
	}
	if _, err := ReadWith(lookup, "", ""); !errors.Is(err, ErrNone) {
		t.Errorf("ReadWith with no names = %v, want ErrNone", err)
	}
	if _, err := ReadWith(lookup, "", missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadWith of a missing file = %v, want it to wrap os.ErrNotExist", err)
	}
}

// Read looks the variable up in the process's environment.
func TestRead(t *testing.T) {
	t.Setenv("EDDY_SECRET_TEST", "from-env")
	if got, err := Read("EDDY_SECRET_TEST", ""); err != nil || got != "from-env" {
		t.Errorf("Read(EDDY_SECRET_TEST) = %q, %v, want from-env", got, err)
	}
}
