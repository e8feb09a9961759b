package bench

import (
	"encoding/json"
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

func TestEvents(t *testing.T) {
	ev := newEvents("t7", 1)
	ids := map[string]bool{}
	for i := range 20000 {
		rec := ev.next(1700000000000000000 + int64(i))
		if len(rec.Fields) != 2 || rec.Fields[0] != payloadField {
			t.Fatalf("event %d: fields %q, want [%s <json>]", i, rec.Fields, payloadField)
		}
		data := rec.Fields[1]
		if len(data) != EventSize {
			t.Fatalf("event %d: %d bytes, want %d: %s", i, len(data), EventSize, data)
		}
		var e struct {
			EventID string `json:"event_id"`
			UserID  string `json:"user_id"`
			TS      int64  `json:"ts"`
		}
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			t.Fatalf("event %d: not JSON: %v: %s", i, err, data)
		}
		if e.UserID != rec.Key {
			t.Errorf("event %d: key %q, user_id %q; want them equal", i, rec.Key, e.UserID)
		}
		if e.TS != 1700000000000000000+int64(i) {
			t.Errorf("event %d: ts %d, want %d", i, e.TS, 1700000000000000000+int64(i))
		}
		if ids[e.EventID] {
			t.Fatalf("event %d: event_id %q repeated", i, e.EventID)
		}
		ids[e.EventID] = true
	}
}

func TestProbesCoverEveryPartition(t *testing.T) {
	for _, parts := range []int{1, 2, 7, 64, 1024} {
		r := &sideRun{inputs: make([]string, parts)}
		recs := r.probes(newEvents("p", 1), 1)
		hit := map[int]bool{}
		for _, rec := range recs {
			hit[processor.PartitionOf(rec.Key, parts)] = true
		}
		if len(recs) != parts || len(hit) != parts {
			t.Errorf("probes for %d partitions: %d events on %d partitions, want one on each", parts, len(recs), len(hit))
		}
	}
}
