package simulate

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"sync"
)

// OrderReply names the replies of one command type: Done when the service
// did it, Failed when it refused ("" for a command that cannot fail, such
// as a compensation).
type OrderReply struct {
	Done   string
	Failed string
}

// DefaultOrderReplies are the replies of the services of configs/orders.yaml
// to each command type, compensations included (which always succeed).
var DefaultOrderReplies = map[string]OrderReply{
	"inventory.reserve":    {Done: "inventory.reserved", Failed: "inventory.rejected"},
	"payment.charge":       {Done: "payment.charged", Failed: "payment.declined"},
	"shipment.create":      {Done: "shipment.created", Failed: "shipment.failed"},
	"notification.confirm": {Done: "notification.sent", Failed: "notification.failed"},
	"inventory.release":    {Done: "inventory.released"},
	"payment.refund":       {Done: "payment.refunded"},
	"shipment.cancel":      {Done: "shipment.cancelled"},
}

// OrderCommand is what the services read of a saga's command: the data
// field of a "command" entry of the saga's output stream.
type OrderCommand struct {
	Type         string `json:"type"`
	SagaID       string `json:"saga_id"`
	Step         string `json:"step"`
	CommandID    string `json:"command_id"`
	Compensation bool   `json:"compensation"`
	OrderID      string `json:"order_id"`
}

// OrderStats counts what OrderServices answered.
type OrderStats struct {
	// Commands is how many commands were read.
	Commands int64
	// Done, Failed and Unanswered split them by the answer given.
	Done, Failed, Unanswered int64
}

// OrderServices plays the services an order saga commands (inventory,
// payment, shipping, notifications): for each command it replies done,
// replies failed, or never replies, as chosen fractions of the commands.
//
// The answer to a command is a function of Seed and its command id only,
// like an idempotent service that dedupes on the command id: a command read
// twice (emitted again after a crash, read again by a restarted simulator)
// gets the same reply, with the same reply id, which the saga pipeline's
// dedupe drops. Compensations are always done.
//
// A reply is an Event keyed by the order id whose Data is a JSON object:
// id ("reply:" + the command id), type (the OrderReply's Done or Failed),
// order_id, saga_id, step and command_id (the command it answers).
type OrderServices struct {
	// Seed makes the answers reproducible. Default 0.
	Seed uint64
	// Fail is the fraction of commands, in [0, 1], that are refused (of
	// those whose type can fail). Default 0.
	Fail float64
	// NoReply is the fraction of commands, in [0, 1], never answered
	// (compensations are always answered). Fail and NoReply together are
	// at most 1. Default 0.
	NoReply float64
	// Replies maps command types to their replies. Default
	// DefaultOrderReplies.
	Replies map[string]OrderReply

	mu    sync.Mutex
	stats OrderStats
}

// ErrUnknownCommand is the error of a command whose type has no replies.
var ErrUnknownCommand = errors.New("simulate: unknown command type")

// Answer decides the reply to one command, given as the data field of its
// entry: the reply, or ok false when the command goes unanswered. A
// command that is not JSON, has no command id or order id, or whose type
// has no replies is an error.
func (s *OrderServices) Answer(data []byte) (reply Event, ok bool, err error) {
	if err := s.validate(); err != nil {
		return Event{}, false, err
	}
	var c OrderCommand
	if err := json.Unmarshal(data, &c); err != nil {
		return Event{}, false, fmt.Errorf("simulate: order command %.80q: %w", data, err)
	}
	if c.CommandID == "" || c.OrderID == "" {
		return Event{}, false, fmt.Errorf("simulate: order command %.80q: no command_id or order_id", data)
	}
	replies := s.Replies
	if replies == nil {
		replies = DefaultOrderReplies
	}
	r, known := replies[c.Type]
	if !known {
		return Event{}, false, fmt.Errorf("%w %q (command %s)", ErrUnknownCommand, c.Type, c.CommandID)
	}
	u := s.draw(c.CommandID)
	typ := r.Done
	switch {
	case c.Compensation:
	case u < s.NoReply:
		s.count(func(st *OrderStats) { st.Unanswered++ })
		return Event{}, false, nil
	case u < s.NoReply+s.Fail && r.Failed != "":
		typ = r.Failed
	}
	b, err := json.Marshal(map[string]any{
		"id": "reply:" + c.CommandID, "type": typ, "order_id": c.OrderID,
		"saga_id": c.SagaID, "step": c.Step, "command_id": c.CommandID,
	})
	if err != nil {
		return Event{}, false, fmt.Errorf("simulate: reply to %s: %w", c.CommandID, err)
	}
	s.count(func(st *OrderStats) {
		if typ == r.Done {
			st.Done++
		} else {
			st.Failed++
		}
	})
	return Event{Key: c.OrderID, Data: b}, true, nil
}

// draw is a number in [0, 1) that depends on Seed and id only.
func (s *OrderServices) draw(id string) float64 {
	h := fnv.New64a()
	var seed [8]byte
	binary.LittleEndian.PutUint64(seed[:], s.Seed)
	_, _ = h.Write(seed[:])
	_, _ = h.Write([]byte(id))
	return float64(h.Sum64()>>11) / (1 << 53)
}

func (s *OrderServices) validate() error {
	switch {
	case math.IsNaN(s.Fail) || s.Fail < 0 || s.Fail > 1:
		return fmt.Errorf("simulate: order services: Fail %v is not in [0, 1]", s.Fail)
	case math.IsNaN(s.NoReply) || s.NoReply < 0 || s.NoReply > 1:
		return fmt.Errorf("simulate: order services: NoReply %v is not in [0, 1]", s.NoReply)
	case s.Fail+s.NoReply > 1:
		return fmt.Errorf("simulate: order services: Fail %v + NoReply %v is over 1", s.Fail, s.NoReply)
	}
	return nil
}

func (s *OrderServices) count(f func(*OrderStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Commands++
	f(&s.stats)
}

// Stats returns what was answered so far.
func (s *OrderServices) Stats() OrderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// CommandSource yields the saga's commands in order: the data field of
// each command entry of its output stream (entries of other kinds left
// out).
type CommandSource interface {
	// Read waits until there are commands after the ones it returned last,
	// or ctx is done, and returns them.
	Read(ctx context.Context) ([][]byte, error)
}

// Run answers the commands src yields, sending the replies of each batch
// to sink in one Send, until ctx is done (nil then) or src, a command or
// sink fails (that error).
func (s *OrderServices) Run(ctx context.Context, src CommandSource, sink Sink) error {
	if err := s.validate(); err != nil {
		return err
	}
	for {
		cmds, err := src.Read(ctx)
		if ctx.Err() != nil {
			return nil //nolint:nilerr // stopped: a read cut short by the stop is not a failure
		}
		if err != nil {
			return fmt.Errorf("simulate: reading commands: %w", err)
		}
		var replies []Event
		for _, c := range cmds {
			r, ok, err := s.Answer(c)
			if err != nil {
				return err
			}
			if ok {
				replies = append(replies, r)
			}
		}
		if len(replies) == 0 {
			continue
		}
		if err := sink.Send(ctx, replies); err != nil {
			if ctx.Err() != nil {
				return nil //nolint:nilerr // stopped: a send cut short by the stop is not a failure
			}
			return fmt.Errorf("simulate: sending replies: %w", err)
		}
	}
}
