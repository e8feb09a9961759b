package ingest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eddy-streams/eddy/internal/mosquittotest"
	"github.com/eddy-streams/eddy/internal/redistest"
	"github.com/eddy-streams/eddy/metrics"
	"github.com/eddy-streams/eddy/pipelines"
)

// validate: true checks the pipeline's schema step at the door: a reading
// that breaks it is still appended (MQTT cannot refuse it to the device;
// the pipeline dead-letters it) but counted as rejected with reason
// schema, and a conforming one is appended as accepted.
func TestMQTTValidateAtTheDoor(t *testing.T) {
	t.Parallel()
	broker := mosquittotest.Start(t)
	rdb := redistest.Start(t).Client(t)
	dir := t.TempDir()
	schema := `{"type": "object", "required": ["value"], "properties": {"value": {"type": "number", "maximum": 100}}}`
	if err := os.WriteFile(filepath.Join(dir, "reading.json"), []byte(schema), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `
schemas:
  - {type: reading, version: 1, file: reading.json}
sources:
  mqtt:
    - name: plant
      broker: ` + broker.URL() + `
      client_id: test-validate
      batch_wait: 2ms
      validate: true
      topics:
        - {filter: "sensors/{device_id}", pipeline: iot, key: device_id}
pipelines:
  - name: iot
    input: {stream: sensors, payload: data}
    key: device_id
    steps:
      - schema: {type: reading}
`
	path := filepath.Join(dir, "eddy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := pipelines.Load(path, nil)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	reg := prometheus.NewRegistry()
	src := startMQTT(t, f, 0, rdb, MQTTOptions{Metrics: metrics.NewIngest(reg)})
	pub := newPublisher(t, broker.Addr(), "dev", pubOptions{})
	pub.mustPublish(t, "sensors/d1", 1, `{"value": 21}`, `{"value": 500}`)

	p := f.Pipeline("iot")
	waitFor(t, 10*time.Second, "2 entries", func() bool { return entryCount(t, rdb, p) == 2 })
	waitAppended(t, 2, src)
	if s := src.m.Stats(); s.Appended != 2 || s.Forwarded != 1 {
		t.Errorf("Stats() = %+v, want 2 appended of which 1 forwarded (the reading over the maximum)", s)
	}
	labels := map[string]string{"source": "mqtt:plant", "pipeline": "iot"}
	schemaLabels := map[string]string{"source": "mqtt:plant", "pipeline": "iot", "reason": ReasonSchema}
	if got := counterValue(t, reg, "eddy_ingest_rejected_total", schemaLabels); got != 1 {
		t.Errorf("rejected{reason=schema} = %v, want 1", got)
	}
	if got := counterValue(t, reg, "eddy_ingest_accepted_total", labels); got != 1 {
		t.Errorf("accepted = %v, want 1", got)
	}
}
