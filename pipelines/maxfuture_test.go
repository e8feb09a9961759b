package pipelines_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/pipetest"
)

// An event time far ahead of the clock (a device with a wrong clock, or
// microseconds for milliseconds) is dead-lettered before it can move the
// watermark: the window it would have closed still takes the readings
// after it, and closes with all of them.
func TestMaxFutureKeepsTheWatermark(t *testing.T) {
	const config = `
pipelines:
  - name: iot
    input: {stream: s, payload: data, event_time: ts}
    key: device
    steps:
      - window:
          name: per_minute
          output: {stream: out}
          size: 1m
          aggregates: {readings: count}
`
	f, err := pipelines.Parse("test.yaml", []byte(config), pipelines.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h, err := pipetest.Start(f, pipetest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ms := func(d time.Duration) int64 { return pipetest.DefaultStart.Add(d).UnixMilli() }
	send := func(ts int64) {
		t.Helper()
		if err := h.Send("iot", `{"device":"d1","ts":`+strconv.FormatInt(ts, 10)+`}`); err != nil {
			t.Fatal(err)
		}
	}
	send(ms(0))
	send(99999999999999) // the year 5138
	send(ms(2 * time.Second))
	send(ms(3 * time.Second))
	if err := h.Advance(2 * time.Minute); err != nil { // the idle watermark closes [0, 1m)
		t.Fatal(err)
	}
	out, err := h.Entries("out")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || !strings.Contains(out[0].Fields["data"], `"readings":3`) {
		t.Errorf("window results = %v, want one with readings 3", out)
	}
	dls, err := h.DeadLetters("iot")
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Fields["eddy.reason"] != "invalid" || !strings.Contains(dls[0].Fields["eddy.error"], "ahead of the clock, over input.max_future 1h0m0s") {
		t.Errorf("dead letters = %v, want the far-future reading, invalid, naming input.max_future", dls)
	}
}
