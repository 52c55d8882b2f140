package sinks

import (
	"context"
	"net/http"
	"strings"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// DeadLetter is what a delivery to a dead-letter sink carries of the delivery that failed:
// the sink it failed at, why (Rejected, RetriesExhausted, SinkNotFound), and its last error.
type DeadLetter struct {
	Sink, Reason, Error string
}

type deadLetterKey struct{}

// WithDeadLetter marks the delivery made with ctx as a dead letter.
func WithDeadLetter(ctx context.Context, dl *DeadLetter) context.Context {
	if dl == nil {
		return ctx
	}
	return context.WithValue(ctx, deadLetterKey{}, dl)
}

// DeadLetterFrom returns the dead letter a delivery is, or nil.
func DeadLetterFrom(ctx context.Context) *DeadLetter {
	dl, _ := ctx.Value(deadLetterKey{}).(*DeadLetter)
	return dl
}

// MessageID identifies one message for receivers that drop repeats (Idempotency-Key,
// webhook-id, Nats-Msg-Id): the event's name, or for a dead letter the event's name and
// the sink it failed at, so that a dead letter is not taken for a repeat of the event
// itself, or of its dead letter from another sink. The event's own id (ce-id) is kept.
func MessageID(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) string {
	if dl := DeadLetterFrom(ctx); dl != nil {
		return event.Name + "/deadletter/" + dl.Sink
	}
	return event.Name
}

// maxDeadLetterError bounds the error a dead letter carries in a header.
const maxDeadLetterError = 1024

// headerSafe makes an error fit a header value: one line, printable ASCII, bounded.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxDeadLetterError {
		s = s[:maxDeadLetterError]
	}
	return s
}

// setExtensionHeaders tells an HTTP receiver that the request is a dead letter or a
// replay's: the CloudEvents extension attributes in binary mode (ce-deadlettersink, ...,
// ce-replay), or headers of their own in the Tencent format (extensionHeader).
func setExtensionHeaders(ctx context.Context, h http.Header, format v1alpha1.HTTPFormat) {
	for name, value := range extensionAttributes(ctx) {
		if format == v1alpha1.HTTPFormatTencent {
			h.Set(extensionHeader(name), headerSafe(value))
		} else {
			h.Set("ce-"+name, headerSafe(value))
		}
	}
}

// extensionHeader is the header that carries an extension attribute in the Tencent format:
// X-Deadletter-Sink, X-Deadletter-Reason, X-Deadletter-Error, X-Replay.
func extensionHeader(attribute string) string {
	if rest, ok := strings.CutPrefix(attribute, "deadletter"); ok {
		return http.CanonicalHeaderKey("X-Deadletter-" + rest)
	}
	return http.CanonicalHeaderKey("X-" + attribute)
}

// attributes are the dead letter's CloudEvents extension attributes.
func (dl *DeadLetter) attributes() map[string]string {
	return map[string]string{"deadlettersink": dl.Sink, "deadletterreason": dl.Reason, "deadlettererror": dl.Error}
}
