package pipelines

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

// A payload the Decoder accepts that cannot be decoded when a step needs
// it (nested deeper than encoding/json goes) is dead-lettered as not_json
// by the handler, not handled as an empty payload.
func TestPayloadDecodedWhenAStepNeedsIt(t *testing.T) {
	deep := `{"user":{"id":"u1"},"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`
	p := jsonPipeline(t, false, "      - filter: 'true'\n      - output: {stream: out}\n")
	m := &processor.Message{ID: "1-0", Fields: []string{"data", deep}}
	if err := p.Decoder().Decode(m); err != nil {
		t.Skipf("the Decoder already refuses it: %v", err)
	}
	err := p.Handler().Handle(context.Background(), m)
	var perm *processor.PermanentError
	if !errors.As(err, &perm) || perm.Reason != processor.ReasonNotJSON {
		t.Fatalf("Handle = %v, want a permanent not_json error", err)
	}
	// output alone never decodes: the payload goes out as it came
	p = jsonPipeline(t, false, "      - output: {stream: out}\n")
	m = &processor.Message{ID: "1-0", Fields: []string{"data", deep}}
	if err := p.Decoder().Decode(m); err != nil {
		t.Fatal(err)
	}
	if err := p.Handler().Handle(context.Background(), m); err != nil {
		t.Fatalf("Handle = %v, want the output written", err)
	}
}
