package sinks

import (
	"context"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

type replayKey struct{}

// WithReplay marks the delivery made with ctx as the SubscriptionReplay's of that name.
// A replay keeps the event's id (ce-id, Idempotency-Key, webhook-id), so that a receiver
// that drops repeats drops it as one, and adds the replay's name, so that a receiver can
// tell a replay from a repeat.
func WithReplay(ctx context.Context, replay string) context.Context {
	if replay == "" {
		return ctx
	}
	return context.WithValue(ctx, replayKey{}, replay)
}

// ReplayFrom returns the name of the replay a delivery is made for, or "".
func ReplayFrom(ctx context.Context) string {
	replay, _ := ctx.Value(replayKey{}).(string)
	return replay
}

// replayAttribute is the CloudEvents extension attribute that names the replay.
const replayAttribute = "replay"

// natsMessageID is the Nats-Msg-Id of a delivery: JetStream drops a message whose id it
// saw within its duplicate window, so a replay's carries the replay's name too; the
// CloudEvent's id stays the event's.
func natsMessageID(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) string {
	id := MessageID(ctx, event)
	if replay := ReplayFrom(ctx); replay != "" {
		id += "/replay/" + replay
	}
	return id
}
