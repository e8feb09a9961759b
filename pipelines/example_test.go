package pipelines_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/eddy-streams/eddy/pipelines"
	"github.com/eddy-streams/eddy/processor"
)

// maskConfig is the config of the custom "mask" step: {field, keep}.
type maskConfig struct {
	Field string `yaml:"field"`
	Keep  int    `yaml:"keep"`
}

// newMask builds a step that replaces all but the first Keep characters of
// a string field with '*'.
func newMask(cfg pipelines.StepConfig) (pipelines.Step, error) {
	var c maskConfig
	if err := cfg.Decode(&c); err != nil {
		return nil, err
	}
	if c.Field == "" {
		return nil, cfg.Errorf("field", "required")
	}
	return pipelines.StepFunc(func(_ context.Context, ev *pipelines.Event) (bool, error) {
		if s, ok := ev.Payload()[c.Field].(string); ok && len(s) > c.Keep {
			ev.Set(c.Field, s[:c.Keep]+strings.Repeat("*", len(s)-c.Keep))
		}
		return true, nil
	}), nil
}

func Example() {
	reg := pipelines.NewRegistry()
	if err := reg.Register("mask", newMask); err != nil {
		fmt.Println(err)
		return
	}
	f, err := pipelines.Parse("signups.yaml", []byte(`
pipelines:
  - name: signups
    input: {stream: signups, payload: data}
    key: user.id
    steps:
      - validate: 'email contains "@"'
      - mask: {field: email, keep: 2}
      - map: {plan: 'upper(plan ?? "free")'}
      - output: {stream: "signups:clean"}
      - state: {hash: 'user:$key', fields: {plan: plan}}
`), reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	opts := f.Pipelines[0].Options()

	// The engine does this for every entry it reads.
	m := &processor.Message{ID: "1700000000000-0", Fields: []string{"data", `{"user":{"id":42},"email":"ada@example.com"}`}}
	if err := opts.Decoder.Decode(m); err != nil {
		fmt.Println(err)
		return
	}
	if err := opts.Handler.Handle(context.Background(), m); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("key:", m.Key)
	for _, e := range m.Effects() {
		fmt.Println(e.Key, e.Fields)
	}
	// Output:
	// key: 42
	// signups:clean [key 42 id 1700000000000-0 data {"email":"ad*************","plan":"FREE","user":{"id":42}}]
	// user:42 [plan FREE]
}

func ExampleConfigError() {
	_, err := pipelines.Parse("bad.yaml", []byte(`
pipelines:
  - name: clicks
    input: {stream: clicks, partitions: 0}
    key: user_id
    retry: {max_attempts: 0, backoff: soon}
    steps:
      - frobnicate: {}
`), nil)
	fmt.Println(err)
	// Output:
	// bad.yaml:4: pipelines[0].input.partitions: must be between 1 and 1024
	// bad.yaml:6: pipelines[0].retry.backoff: invalid duration "soon": want a Go duration such as 500ms, 10s or 24h
	// bad.yaml:6: pipelines[0].retry.max_attempts: must be at least 1
	// bad.yaml:8: pipelines[0].steps[0]: unknown step type "frobnicate" (registered: absence, fault, filter, funnel, map, output, require, saga, schema, session, state, threshold, validate, window)
}
