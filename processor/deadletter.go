package processor

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DeadLetter is one entry of a dead-letter stream: the original entry's
// fields and what the engine recorded about its failure.
type DeadLetter struct {
	// ID is the dead letter's own id in the dead-letter stream.
	ID string
	// Fields are the original entry's fields, in order.
	Fields []string
	// Reason says why ("not_json", "max_attempts", …); Error is the error text.
	Reason, Error string
	// Attempts is how many times the entry was tried.
	Attempts int
	// Stream and EntryID locate the original entry: replay appends to Stream.
	Stream, EntryID                string
	Key, Pipeline, Group, Consumer string
	FailedAt                       time.Time
}

// parseDeadLetter splits a dead-letter entry into the original fields and
// the engine's "eddy." fields.
func parseDeadLetter(id string, fields []string) (DeadLetter, error) {
	d := DeadLetter{ID: id}
	for i := 0; i+1 < len(fields); i += 2 {
		name, v := fields[i], fields[i+1]
		if !strings.HasPrefix(name, "eddy.") {
			d.Fields = append(d.Fields, name, v)
			continue
		}
		switch name {
		case "eddy.fields": // a very wide entry, kept as one JSON array
			if err := json.Unmarshal([]byte(v), &d.Fields); err != nil {
				return d, fmt.Errorf("dead letter %s: eddy.fields: %w", id, err)
			}
		case "eddy.reason":
			d.Reason = v
		case "eddy.error":
			d.Error = v
		case "eddy.attempts":
			d.Attempts, _ = strconv.Atoi(v)
		case "eddy.stream":
			d.Stream = v
		case "eddy.id":
			d.EntryID = v
		case "eddy.key":
			d.Key = v
		case "eddy.pipeline":
			d.Pipeline = v
		case "eddy.group":
			d.Group = v
		case "eddy.consumer":
			d.Consumer = v
		case "eddy.failed_at":
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
				d.FailedAt = time.UnixMilli(ms)
			}
		default:
			d.Fields = append(d.Fields, name, v) // an original field that happens to start with "eddy."
		}
	}
	if d.Stream == "" || d.Reason == "" {
		return d, fmt.Errorf("dead letter %s: not written by eddy (no eddy.stream or eddy.reason)", id)
	}
	if len(d.Fields) == 0 {
		return d, fmt.Errorf("dead letter %s: no original fields", id)
	}
	return d, nil
}
