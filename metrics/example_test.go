package metrics_test

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/processor"
)

func Example() {
	reg := prometheus.NewRegistry() // cmd/eddy serves this on /metrics
	m := metrics.New(reg)

	// The engine reports to m through processor.Options.Observer.
	var obs processor.Observer = m
	obs.Committed(processor.Commit{
		Pipeline: "orders", Partition: 0, Processed: 2,
		DeadLetters: map[string]int{processor.ReasonNotJSON: 1},
		Latencies:   []time.Duration{3 * time.Millisecond, 5 * time.Millisecond},
	})
	m.SetPartitionStats("orders", 0, 12, 3, 1500*time.Millisecond)

	families, _ := reg.Gather()
	for _, f := range families {
		switch f.GetName() {
		case "eddy_processor_processed_total", "eddy_processor_lag_entries", "eddy_processor_oldest_pending_age_seconds":
			for _, s := range f.GetMetric() {
				v := s.GetCounter().GetValue() + s.GetGauge().GetValue()
				fmt.Println(f.GetName(), v)
			}
		}
	}
	// Output:
	// eddy_processor_lag_entries 12
	// eddy_processor_oldest_pending_age_seconds 1.5
	// eddy_processor_processed_total 2
}
