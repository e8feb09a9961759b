package ingest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
)

// Fuzz targets for what the HTTP source reads from the network: request
// bodies (a JSON object, an array, NDJSON) and gzip. Their seed corpora
// are in testdata/fuzz/<target>; `go test -fuzz FuzzSplitBody ./ingest`
// runs one.

// checkSplit checks what splitBody made of body: no more than max events,
// lines rising from 1, each good event a JSON object cut from the body.
func checkSplit(t *testing.T, body []byte, ndjson bool, maxEvents int) {
	evs, err := splitBody(body, ndjson, maxEvents)
	if err != nil {
		var be *bodyError
		if !errors.As(err, &be) || (be.status != http.StatusBadRequest && be.status != http.StatusRequestEntityTooLarge) || be.msg == "" {
			t.Fatalf("splitBody error %T %v: want a 400 or 413 bodyError with a message", err, err)
		}
		return
	}
	if len(evs) == 0 || len(evs) > maxEvents {
		t.Fatalf("splitBody returned %d events (max %d) and no error", len(evs), maxEvents)
	}
	last := 0
	for _, ev := range evs {
		if ev.line <= last {
			t.Fatalf("line %d after line %d", ev.line, last)
		}
		last = ev.line
		if ev.bad != nil {
			if ev.bad.Reason != ReasonNotJSON || ev.bad.Message == "" {
				t.Fatalf("line %d: rejection %+v", ev.line, ev.bad)
			}
			continue
		}
		if !json.Valid(ev.data) || ev.data[0] != '{' {
			t.Fatalf("line %d: accepted %q, not a JSON object", ev.line, ev.data)
		}
		if !bytes.Contains(body, ev.data) {
			t.Fatalf("line %d: %q is not part of the body", ev.line, ev.data)
		}
	}
}

func FuzzSplitBody(f *testing.F) {
	for _, s := range []string{
		`{"user_id":"u1","n":1}`,
		"{\n \"a\": [1, {\"b\": null}]\n}\n",
		`[{"user_id":"a"},{"user_id":"b"}, 3, "x", [], null]`,
		"{\"a\":1}\n\n{\"a\":\n[1]\r\n{\"b\":2}",
		"\xEF\xBB\xBF{\"a\":1}\n",
		`[{"a":1}] {}`,
		`[`,
		"",
		"  \n\t",
		`"just a string"`,
		`{"a":"\ud800"}`,
	} {
		f.Add([]byte(s), false, 3)
		f.Add([]byte(s), true, 100)
	}
	f.Fuzz(func(t *testing.T, body []byte, ndjson bool, maxEvents int) {
		maxEvents = 1 + int(uint(maxEvents)%1000)
		checkSplit(t, body, ndjson, maxEvents)
	})
}

// FuzzReadBodyGzip feeds readBody gzip streams (the fuzzer's bytes, and
// those bytes compressed) and checks that it never returns more than the
// limit, returns exactly what gzip holds when within it, and refuses
// everything else with a 400 or 413 that says why.
func FuzzReadBodyGzip(f *testing.F) {
	for _, s := range []string{"", `{"a":1}`, "{\"a\":1}\n{\"b\":2}\n", string(make([]byte, 5000))} {
		f.Add([]byte(s), true, int64(1000))
	}
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"), false, int64(10))
	f.Fuzz(func(t *testing.T, data []byte, compress bool, limit int64) {
		limit = 1 + int64(uint64(limit)%(1<<20))
		in := data
		if compress {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write(data)
			_ = zw.Close()
			in = buf.Bytes()
		}
		got, err := readBody(bytes.NewReader(in), true, bodyLimits{maxBody: 1 << 30, maxDecompressed: limit, maxEvents: 1}, nil)
		if int64(len(got)) > limit {
			t.Fatalf("readBody returned %d bytes, over the limit %d", len(got), limit)
		}
		// What gzip itself makes of in, up to one byte past the limit.
		var want []byte
		zr, zerr := gzip.NewReader(bytes.NewReader(in))
		if zerr == nil {
			want, zerr = io.ReadAll(io.LimitReader(zr, limit+1))
		}
		switch {
		case err == nil:
			if zerr != nil || !bytes.Equal(got, want) {
				t.Fatalf("readBody = %d bytes, gzip says %d bytes, %v", len(got), len(want), zerr)
			}
		case zerr == nil && int64(len(want)) > limit:
			var be *bodyError
			if !errors.As(err, &be) || be.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("over the limit: %v, want 413", err)
			}
		default:
			var be *bodyError
			if !errors.As(err, &be) || be.status != http.StatusBadRequest || be.msg == "" {
				t.Fatalf("bad gzip: %v, want 400 with a message", err)
			}
		}
		if compress && err == nil && !bytes.Equal(got, data) {
			t.Fatalf("round trip: got %d bytes, want %d", len(got), len(data))
		}
		if err == nil {
			checkSplit(t, got, false, 50)
		}
	})
}
