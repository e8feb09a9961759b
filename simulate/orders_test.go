package simulate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func orderCommand(i int, typ string, undo bool) []byte {
	b, _ := json.Marshal(map[string]any{
		"type": typ, "saga_id": fmt.Sprintf("order:o%d:e%d", i, i), "step": "s",
		"command_id": fmt.Sprintf("order:o%d:e%d:s:do", i, i), "compensation": undo, "order_id": fmt.Sprintf("o%d", i),
	})
	return b
}

// The fractions of failures and of commands never answered are kept
// (within 1.5 points over 10,000 commands); compensations are always done;
// a command read again gets the same reply; another seed answers
// otherwise.
func TestOrderServicesAnswers(t *testing.T) {
	const n = 10000
	s := &OrderServices{Seed: 7, Fail: 0.2, NoReply: 0.1}
	var done, failed, none int
	answers := map[int]string{}
	for i := 0; i < n; i++ {
		r, ok, err := s.Answer(orderCommand(i, "payment.charge", false))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			none++
			answers[i] = ""
			continue
		}
		var v map[string]any
		if err := json.Unmarshal(r.Data, &v); err != nil {
			t.Fatal(err)
		}
		if r.Key != fmt.Sprintf("o%d", i) || v["command_id"] != fmt.Sprintf("order:o%d:e%d:s:do", i, i) || v["id"] != "reply:"+v["command_id"].(string) || v["order_id"] != r.Key {
			t.Fatalf("reply %s (key %s): want the order's key, its command id and id reply:<command id>", r.Data, r.Key)
		}
		switch v["type"] {
		case "payment.charged":
			done++
		case "payment.declined":
			failed++
		default:
			t.Fatalf("reply type %v", v["type"])
		}
		answers[i] = string(r.Data)
	}
	for name, got := range map[string]float64{"failed": float64(failed) / n, "unanswered": float64(none) / n, "done": float64(done) / n} {
		want := map[string]float64{"failed": 0.2, "unanswered": 0.1, "done": 0.7}[name]
		if got < want-0.015 || got > want+0.015 {
			t.Errorf("%s fraction = %.3f, want %.2f", name, got, want)
		}
	}
	if st := s.Stats(); st != (OrderStats{Commands: n, Done: int64(done), Failed: int64(failed), Unanswered: int64(none)}) {
		t.Errorf("Stats() = %+v, want %d commands, %d done, %d failed, %d unanswered", st, n, done, failed, none)
	}
	differ := 0
	other := &OrderServices{Seed: 8, Fail: 0.2, NoReply: 0.1}
	for i := 0; i < 200; i++ {
		r, ok, _ := s.Answer(orderCommand(i, "payment.charge", false))
		if got := map[bool]string{true: string(r.Data)}[ok]; got != answers[i] {
			t.Fatalf("command %d read again: reply %q, want %q", i, got, answers[i])
		}
		r2, ok2, _ := other.Answer(orderCommand(i, "payment.charge", false))
		if ok2 != ok || string(r2.Data) != string(r.Data) {
			differ++
		}
	}
	if differ == 0 {
		t.Error("seed 8 answered 200 commands as seed 7 did")
	}
	all := &OrderServices{Fail: 0.5, NoReply: 0.5}
	for i := 0; i < 100; i++ {
		r, ok, err := all.Answer(orderCommand(i, "payment.refund", true))
		if err != nil || !ok || !strings.Contains(string(r.Data), `"type":"payment.refunded"`) {
			t.Fatalf("compensation: %s %v %v, want payment.refunded", r.Data, ok, err)
		}
	}
}

// Broken commands and settings are errors.
func TestOrderServicesErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *OrderServices
		cmd  []byte
		want string
	}{
		{"not json", &OrderServices{}, []byte("{"), "order command"},
		{"no command id", &OrderServices{}, []byte(`{"type":"payment.charge","order_id":"o1"}`), "no command_id"},
		{"unknown type", &OrderServices{}, orderCommand(1, "coffee.brew", false), "unknown command type"},
		{"fail over 1", &OrderServices{Fail: 1.5}, orderCommand(1, "payment.charge", false), "Fail 1.5"},
		{"sum over 1", &OrderServices{Fail: 0.6, NoReply: 0.6}, orderCommand(1, "payment.charge", false), "over 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := tc.s.Answer(tc.cmd); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Answer = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, _, err := (&OrderServices{}).Answer(orderCommand(1, "x", false)); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("Answer(unknown) = %v, want ErrUnknownCommand", err)
	}
}

// sliceSource yields its batches, then waits for ctx.
type sliceSource struct{ batches [][][]byte }

func (s *sliceSource) Read(ctx context.Context) ([][]byte, error) {
	if len(s.batches) == 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	return b, nil
}

// Run answers each batch in one Send, in order, skipping the unanswered,
// and returns nil once ctx is done; a broken command stops it.
func TestOrderServicesRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &OrderServices{}
	src := &sliceSource{batches: [][][]byte{
		{orderCommand(1, "inventory.reserve", false), orderCommand(2, "inventory.reserve", false)},
		{orderCommand(1, "inventory.release", true)},
	}}
	var got [][]string
	sink := SinkFunc(func(_ context.Context, batch []Event) error {
		var keys []string
		for _, e := range batch {
			keys = append(keys, e.Key)
		}
		got = append(got, keys)
		if len(got) == 2 {
			cancel()
		}
		return nil
	})
	if err := s.Run(ctx, src, sink); err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"o1", "o2"}, {"o1"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("sent %v, want %v", got, want)
	}
	bad := &sliceSource{batches: [][][]byte{{[]byte("{")}}}
	if err := s.Run(context.Background(), bad, sink); err == nil {
		t.Error("Run with a broken command = nil, want an error")
	}
}
