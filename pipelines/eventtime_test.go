package pipelines

import (
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/processor"
)

// input.event_time is read from a JSON payload (undecoded) and from an
// entry's own fields alike: unix ms as a number or digits, or RFC 3339;
// missing, null or anything else dead-letters the event as invalid.
func TestEventTimeDecoder(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(1767225600123)
	jsonP := parse(t, "pipelines: [{name: p, input: {stream: s, payload: data, event_time: meta.ts, max_future: -1s}, key: k}]\n").Pipelines[0]
	fieldsP := parse(t, "pipelines: [{name: p, input: {stream: s, event_time: ts, max_future: -1s}, key: k}]\n").Pipelines[0]
	for _, tt := range []struct {
		name   string
		p      *Pipeline
		fields []string
		want   time.Time
		err    string
	}{
		{"json number", jsonP, []string{"data", `{"k":"a","meta":{"ts":1767225600123}}`}, at, ""},
		{"json digits", jsonP, []string{"data", `{"k":"a","meta":{"ts":"1767225600123"}}`}, at, ""},
		{"json dotted name", jsonP, []string{"data", `{"k":"a","meta.ts":1767225600123}`}, at, ""},
		{"json RFC 3339", jsonP, []string{"data", `{"k":"a","meta":{"ts":"2026-01-01T00:00:00.123Z"}}`}, at, ""},
		{"json missing", jsonP, []string{"data", `{"k":"a","meta":{}}`}, time.Time{}, `event time "meta.ts" is missing`},
		{"json null", jsonP, []string{"data", `{"k":"a","meta":{"ts":null}}`}, time.Time{}, `event time "meta.ts" is missing`},
		{"json text", jsonP, []string{"data", `{"k":"a","meta":{"ts":"soon"}}`}, time.Time{}, `"soon" is neither unix milliseconds nor an RFC 3339 time`},
		{"json object", jsonP, []string{"data", `{"k":"a","meta":{"ts":{}}}`}, time.Time{}, "want unix milliseconds or an RFC 3339 string"},
		{"field digits", fieldsP, []string{"k", "a", "ts", "1767225600123"}, at, ""},
		{"field missing", fieldsP, []string{"k", "a"}, time.Time{}, `event time "ts" is missing`},
	} {
		m := &processor.Message{ID: "1-0", Fields: tt.fields}
		err := tt.p.Decoder().Decode(m)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: Decode = %v, want nil", tt.name, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || outcome(err) != processor.ReasonInvalid):
			t.Errorf("%s: Decode = %v, want invalid with %q", tt.name, err, tt.err)
		case tt.err == "" && !m.EventTime.Equal(tt.want):
			t.Errorf("%s: EventTime = %v, want %v", tt.name, m.EventTime, tt.want)
		}
	}
}
