package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestIngestSeriesFromTheStart(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	m := NewIngest(reg)
	m.Source("http", []string{"clicks", "iot"}, []string{"not_json", "schema"}, []string{"200", "503"})
	want := map[string]int{
		"eddy_ingest_accepted_total":           2,
		"eddy_ingest_rejected_total":           4,
		"eddy_ingest_requests_total":           6, // 2 statuses × (2 pipelines + "")
		"eddy_ingest_received_bytes_total":     2,
		"eddy_ingest_request_duration_seconds": 2,
		"eddy_ingest_publish_duration_seconds": 2,
		"eddy_ingest_in_flight_requests":       2,
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range families {
		got[f.GetName()] = len(f.GetMetric())
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s has %d series before any event, want %d", name, got[name], n)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}

func TestIngestSource(t *testing.T) {
	t.Parallel()
	m := NewIngest(nil)
	s := m.Source("mqtt:plant", []string{"iot"}, nil, nil)
	s.InFlight("iot", 1)
	s.Accepted("iot", 3)
	s.Rejected("iot", "not_json", 2)
	s.Published("iot", time.Millisecond)
	s.Answered("iot", "acked", 120, 2*time.Millisecond)
	s.InFlight("iot", -1)
	for _, tc := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.accepted.WithLabelValues("mqtt:plant", "iot"), 3},
		{m.rejected.WithLabelValues("mqtt:plant", "iot", "not_json"), 2},
		{m.requests.WithLabelValues("mqtt:plant", "iot", "acked"), 1},
		{m.bytes.WithLabelValues("mqtt:plant", "iot"), 120},
		{m.inFlight.WithLabelValues("mqtt:plant", "iot"), 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%v = %v, want %v", tc.c, got, tc.want)
		}
	}
	var nilSource *IngestSource // records nothing, never panics
	nilSource.Accepted("x", 1)
	nilSource.Answered("x", "200", 1, time.Second)
	for _, c := range m.collectors() {
		if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
			t.Errorf("CollectAndLint = %v, %v", problems, err)
		}
	}
}
