package pipelines

import (
	"context"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/processor"
)

// Version n runs in a group of its own from the first entry and writes its
// read model under hashes of its own; version 1 is the pipeline as
// configured.
func TestAtVersion(t *testing.T) {
	f := parse(t, `pipelines:
  - name: acc
    input: {stream: ledger, partitions: 2, payload: data, start: newest}
    key: account
    steps:
      - state: {hash: 'account:$key', incr: {balance: amount}, fields: {last: id}}
`)
	p := f.Pipelines[0]
	if p.AtVersion(1) != p || p.Version() != 1 {
		t.Fatalf("AtVersion(1) is not the pipeline itself")
	}
	v3 := p.AtVersion(3)
	o := v3.Options()
	if o.Group != "acc:v3" || o.Start != processor.StartOldest || v3.Version() != 3 {
		t.Fatalf("version 3: group %q start %q version %d", o.Group, o.Start, v3.Version())
	}
	if p.Options().Group != "acc" || p.Options().Start != processor.StartNewest {
		t.Fatalf("AtVersion changed the pipeline it was called on: %+v", p.Options())
	}
	if got := p.ReadModels(); len(got) != 1 || got[0] != "account:$key" {
		t.Fatalf("ReadModels = %q", got)
	}
	for _, c := range []struct {
		p    *Pipeline
		hash string
	}{{p, "account:a1"}, {v3, "v3:account:a1"}} {
		m := &processor.Message{Key: "a1", ID: "1-0", Data: map[string]any{"account": "a1", "amount": 5, "id": "e1"}}
		if err := c.p.Handler().Handle(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		effects := m.Effects()
		if len(effects) != 2 || effects[0].Key != c.hash || effects[1].Key != c.hash {
			t.Errorf("version %d wrote %+v, want hash %s", c.p.Version(), effects, c.hash)
		}
	}
}

func TestRebuildable(t *testing.T) {
	head := "pipelines:\n  - name: acc\n    input: {stream: ledger, payload: data}\n    key: account\n    steps:\n"
	cases := []struct{ steps, want string }{
		{"      - require: [amount]\n      - filter: 'amount != 0'\n      - map: {amount: 'int(amount)'}\n      - state: {hash: 'account:$key', incr: {balance: amount}}\n", ""},
		{"      - state: {name: own, fields: {last: amount}}\n", "no read model to rebuild"},
		{"      - state: {hash: 'a:$key', fields: {x: amount}}\n      - output: {stream: out}\n", "steps[1] is output, which a rebuild would run again"},
		{"      - window: {name: w, time: processing, size: 1m, aggregates: {n: count}, output: {stream: o, hash: 'w:$key'}}\n", "steps[0] is window"},
	}
	for _, c := range cases {
		err := parse(t, head+c.steps).Pipelines[0].Rebuildable()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: Rebuildable = %v, want nil", c.steps, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: Rebuildable = %v, want %q", c.steps, err, c.want)
		}
	}
}
