package processor

import (
	"errors"
	"fmt"
)

// Dead-letter reasons set by the engine itself. Decoders and handlers may use
// their own reasons through Permanent.
const (
	ReasonInvalid       = "invalid"        // permanent error without a reason
	ReasonNotJSON       = "not_json"       // payload is not valid JSON
	ReasonMissingKey    = "missing_key"    // the key field or path is absent
	ReasonTooLarge      = "too_large"      // entry is over MaxEventBytes
	ReasonMaxAttempts   = "max_attempts"   // transient failures used up every attempt
	ReasonMaxDeliveries = "max_deliveries" // delivered more than MaxAttempts times without completing
	ReasonInvalidEffect = "invalid_effect" // the handler recorded an effect the commit cannot write
	ReasonOutputFailed  = "output_failed"  // an effect's key holds a value of another type
	// ReasonWrongPartition: the entry's key routes to another partition
	// (Options.WrongPartition = WrongPartitionDeadLetter).
	ReasonWrongPartition = "wrong_partition"
	// ReasonCommitFailed: the commit script failed half-way (which its
	// checks exist to prevent); the entry's effects may be partly written.
	ReasonCommitFailed = "commit_failed"
)

// Reasons lists every dead-letter reason the engine itself gives, for
// metrics to create their series at zero.
var Reasons = []string{ReasonInvalid, ReasonNotJSON, ReasonMissingKey, ReasonTooLarge, ReasonMaxAttempts,
	ReasonMaxDeliveries, ReasonInvalidEffect, ReasonOutputFailed, ReasonWrongPartition, ReasonCommitFailed}

// PermanentError marks a failure that retrying cannot fix. The entry goes to
// the dead-letter stream at once, with Reason in its "eddy.reason" field.
type PermanentError struct {
	Reason string
	Err    error
}

func (e *PermanentError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Err.Error()
}

func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a permanent failure with the given reason.
// An empty reason becomes ReasonInvalid.
func Permanent(reason string, err error) error {
	if reason == "" {
		reason = ReasonInvalid
	}
	return &PermanentError{Reason: reason, Err: err}
}

// Permanentf is Permanent with a formatted error.
func Permanentf(reason, format string, args ...any) error {
	return Permanent(reason, fmt.Errorf(format, args...))
}

// permanentReason reports whether err is permanent, and its reason.
func permanentReason(err error) (string, bool) {
	var pe *PermanentError
	if errors.As(err, &pe) {
		if pe.Reason == "" {
			return ReasonInvalid, true
		}
		return pe.Reason, true
	}
	return "", false
}

// ErrFenced is returned when a commit is rejected because another worker
// now owns the partition.
var ErrFenced = errors.New("processor: partition is owned by another worker")
