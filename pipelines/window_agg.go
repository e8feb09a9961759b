package pipelines

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/axiomhq/hyperloglog"
	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/processor"
)

// The aggregates of the window step: what each keeps in a window's state
// and how it adds an event, merges two sessions and reports its value.

// Aggregate functions of the window step.
const (
	AggCount         = "count"          // events (bare), or events with the field present
	AggSum           = "sum"            // sum of a numeric field
	AggMin           = "min"            // least value of a numeric field
	AggMax           = "max"            // greatest value of a numeric field
	AggAvg           = "avg"            // mean of a numeric field
	AggFirst         = "first"          // the field's value in the earliest event (by the step's time)
	AggLast          = "last"           // the field's value in the latest event (by the step's time)
	AggCountDistinct = "count_distinct" // distinct values of the field (HyperLogLog)
)

// aggFuncs lists the functions in the order their problems name them.
var aggFuncs = []string{AggCount, AggSum, AggMin, AggMax, AggAvg, AggFirst, AggLast, AggCountDistinct}

// numericAgg reports whether fn needs a number.
func numericAgg(fn string) bool {
	return fn == AggSum || fn == AggMin || fn == AggMax || fn == AggAvg
}

// windowAgg is one configured aggregate: its result name, function and
// field (none for a bare count).
type windowAgg struct {
	name  string
	fn    string
	field Path
	has   bool // field set
	line  int
}

// windowAggs is the "aggregates" mapping, in YAML order: each entry is
// "name: count" or "name: {<function>: <field path>}".
type windowAggs []windowAgg

func (w *windowAggs) decodeNode(c *checker, n *yaml.Node, path string) {
	ok := c.pairs(n, path, func(key string, k, val *yaml.Node, p string) {
		if key == "" {
			c.addAt(k.Line, p, "empty aggregate name")
			return
		}
		a := windowAgg{name: key, line: k.Line}
		switch {
		case val.Kind == yaml.ScalarNode && !isNull(val):
			a.fn = val.Value
			if a.fn != AggCount {
				if !knownAgg(a.fn) {
					c.addAt(val.Line, p, "unknown aggregate function %q (want one of: %s)", a.fn, strings.Join(aggFuncs, ", "))
				} else {
					c.addAt(val.Line, p, "%s needs a field: write {%s: <field path>}", a.fn, a.fn)
				}
				return
			}
		case val.Kind == yaml.MappingNode && len(val.Content) == 2 && val.Content[0].Kind == yaml.ScalarNode:
			fk, fv := val.Content[0], val.Content[1]
			a.fn = fk.Value
			fp := joinPath(p, fk.Value)
			c.lines[fp] = fk.Line
			if !knownAgg(a.fn) {
				c.addAt(fk.Line, fp, "unknown aggregate function %q (want one of: %s)", a.fn, strings.Join(aggFuncs, ", "))
				return
			}
			if !c.wantScalar(fv, fp, "a field path") {
				return
			}
			if isNull(fv) || strings.TrimSpace(fv.Value) == "" {
				c.addAt(fv.Line, fp, "empty field: want the path of the field to aggregate, such as amount or order.total")
				return
			}
			var err error
			if a.field, err = ParsePath(fv.Value); err != nil {
				c.addAt(fv.Line, fp, "%v", err)
				return
			}
			a.has = true
		default:
			c.addAt(val.Line, p, "want count or a one-key mapping {<function>: <field path>}, got %s", stepShape(val))
			return
		}
		*w = append(*w, a)
	})
	if ok && (isNull(n) || len(n.Content) == 0) {
		c.addAt(n.Line, path, "want at least one aggregate")
	}
}

func knownAgg(fn string) bool {
	for _, f := range aggFuncs {
		if f == fn {
			return true
		}
	}
	return false
}

// aggState is what one aggregate keeps in a window's state (JSON, short
// names: it is written once per event).
type aggState struct {
	// N counts the values taken (events with the field, for count).
	N int64 `json:"n,omitempty"`
	// I is the sum while every value was an integer and it fits int64; F
	// the sum in float64 in the order the values came; Fl set once F is
	// the sum (a fraction came, or I overflowed).
	I  int64   `json:"i,omitempty"`
	F  float64 `json:"f,omitempty"`
	Fl bool    `json:"fl,omitempty"`
	// M is the least (min) or greatest (max) value.
	M float64 `json:"m,omitempty"`
	// V is the first or last value as JSON, T its time (unix ms).
	V json.RawMessage `json:"v,omitempty"`
	T int64           `json:"t,omitempty"`
	// H is the HyperLogLog sketch of count_distinct (binary; base64 in
	// the JSON).
	H []byte `json:"h,omitempty"`
}

// numberOf reads a numeric field's value: a JSON number, or a string that
// holds a finite number (a pipeline without input.payload has strings
// only). isInt is set for integers that int64 holds.
func numberOf(v any) (f float64, i int64, isInt bool, ok bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), x, true, true
	case int:
		return float64(x), int64(x), true, true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, 0, false, false
		}
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return x, int64(x), true, true
		}
		return x, 0, false, true
	case json.Number:
		return numberOf(string(x))
	case string:
		s := strings.TrimSpace(x)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return float64(n), n, true, true
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, 0, false, false
		}
		return f, 0, false, true
	}
	return 0, 0, false, false
}

// add takes the event's value v of the aggregate (present: the field is
// there and not null) at time t (unix ms). A numeric aggregate refuses a
// value that is not a number.
func (s *aggState) add(a *windowAgg, v any, present bool, t int64) error {
	if !a.has { // bare count: the window's event count
		s.N++
		return nil
	}
	if !present {
		return nil
	}
	switch a.fn {
	case AggCount:
		s.N++
	case AggSum, AggAvg, AggMin, AggMax:
		f, i, isInt, ok := numberOf(v)
		if !ok {
			return processor.Permanentf(processor.ReasonInvalid, "%s of %q: %s is not a number", a.fn, a.field, describe(v))
		}
		switch a.fn {
		case AggMin:
			if s.N == 0 || f < s.M {
				s.M = f
			}
		case AggMax:
			if s.N == 0 || f > s.M {
				s.M = f
			}
		default:
			s.addSum(f, i, isInt)
		}
		s.N++
	case AggFirst, AggLast:
		if s.N > 0 && (a.fn == AggFirst && t >= s.T || a.fn == AggLast && t < s.T) {
			s.N++
			return nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return processor.Permanentf(processor.ReasonInvalid, "%s of %q: %v", a.fn, a.field, err)
		}
		s.V, s.T = b, t
		s.N++
	case AggCountDistinct:
		sk, err := s.sketch()
		if err != nil {
			return err
		}
		sk.Insert([]byte(formatValue(v)))
		if s.H, err = sk.MarshalBinary(); err != nil {
			return fmt.Errorf("count_distinct of %q: %w", a.field, err)
		}
		s.N++
	}
	return nil
}

func (s *aggState) addSum(f float64, i int64, isInt bool) {
	s.F += f
	if s.Fl {
		return
	}
	if !isInt {
		s.Fl = true
		return
	}
	if sum := s.I + i; (i > 0 && sum < s.I) || (i < 0 && sum > s.I) {
		s.Fl = true // overflow: the float sum goes on
		return
	}
	s.I += i
}

// sketch decodes the HyperLogLog of count_distinct; a new one (sparse,
// precision 14) when there is none yet.
func (s *aggState) sketch() (*hyperloglog.Sketch, error) {
	sk := hyperloglog.New14()
	if len(s.H) == 0 {
		return sk, nil
	}
	if err := sk.UnmarshalBinary(s.H); err != nil {
		return nil, processor.Permanent(processor.ReasonInvalid, fmt.Errorf("count_distinct sketch in the state: %w", err))
	}
	return sk, nil
}

// merge folds o, the same aggregate of another session, into s.
func (s *aggState) merge(a *windowAgg, o *aggState) error {
	if o.N == 0 {
		return nil
	}
	if s.N == 0 {
		*s = *o
		return nil
	}
	switch a.fn {
	case AggMin:
		s.M = math.Min(s.M, o.M)
	case AggMax:
		s.M = math.Max(s.M, o.M)
	case AggSum, AggAvg:
		s.F += o.F
		if o.Fl {
			s.Fl = true
		} else if !s.Fl {
			s.addSum(0, o.I, true) // F has o.F already
		}
	case AggFirst:
		if o.T < s.T {
			s.V, s.T = o.V, o.T
		}
	case AggLast:
		if o.T >= s.T {
			s.V, s.T = o.V, o.T
		}
	case AggCountDistinct:
		sk, err := s.sketch()
		if err != nil {
			return err
		}
		osk, err := o.sketch()
		if err != nil {
			return err
		}
		if err := sk.Merge(osk); err != nil {
			return fmt.Errorf("count_distinct of %q: %w", a.field, err)
		}
		if s.H, err = sk.MarshalBinary(); err != nil {
			return fmt.Errorf("count_distinct of %q: %w", a.field, err)
		}
	}
	s.N += o.N
	return nil
}

// value is the aggregate's result: nil when no event had a value (but 0
// for the counts).
func (s *aggState) value(a *windowAgg) (any, error) {
	switch a.fn {
	case AggCount:
		return s.N, nil
	case AggCountDistinct:
		if s.N == 0 {
			return int64(0), nil
		}
		sk, err := s.sketch()
		if err != nil {
			return nil, err
		}
		return int64(sk.Estimate()), nil
	}
	if s.N == 0 {
		return nil, nil
	}
	switch a.fn {
	case AggSum:
		if s.Fl {
			return s.F, nil
		}
		return s.I, nil
	case AggAvg:
		sum := float64(s.I)
		if s.Fl {
			sum = s.F
		}
		return sum / float64(s.N), nil
	case AggMin, AggMax:
		return s.M, nil
	case AggFirst, AggLast:
		return s.V, nil
	}
	return nil, fmt.Errorf("aggregate %s: unknown function %q", a.name, a.fn)
}

// describe names a value that is not a number, for a dead letter.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case bool:
		return strconv.FormatBool(x)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}
