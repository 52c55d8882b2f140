// Package sinks delivers OfficialAccountSubscription events to downstream systems, one
// file per kind of destination. A delivery either succeeds, fails for now (retried with
// backoff), or fails for good.
package sinks

import (
	"context"
	"errors"
	"time"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// Sink delivers events to one destination. Implementations are safe for concurrent use
// and reused across reconciles; Close releases their connections.
type Sink interface {
	Deliver(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error
	Close() error
}

// Checker is a Sink that can tell, without delivering, whether deliveries can succeed
// (credentials, permissions, a table). Its error is classified like a delivery's.
type Checker interface {
	Check(ctx context.Context) error
}

// DeliveryError says whether a failed delivery is worth trying again.
type DeliveryError struct {
	Err error
	// Permanent failures (the destination rejected the event) are not retried.
	Permanent bool
	// RetryAfter is the destination's own wish for the next attempt, if it said one.
	RetryAfter time.Duration
}

func (e *DeliveryError) Error() string { return e.Err.Error() }
func (e *DeliveryError) Unwrap() error { return e.Err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error { return &DeliveryError{Err: err, Permanent: true} }

// IsPermanent reports whether err says the delivery must not be retried. Errors that do
// not say so (timeouts, refused connections) are transient.
func IsPermanent(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Permanent
}

// RetryAfter returns the delay the destination asked for, or 0.
func RetryAfter(err error) time.Duration {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de.RetryAfter
	}
	return 0
}
