package controllers

import (
	"cmp"
	"fmt"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

var (
	received     = metav1.NewTime(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	firstAttempt = metav1.NewTime(received.Add(time.Minute))
)

func eventWith(name string, deliveries ...v1alpha1.SinkDelivery) *v1alpha1.OfficialAccountSubscription {
	return &v1alpha1.OfficialAccountSubscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: "events", Name: name, UID: types.UID("uid-" + name)},
		Spec:       v1alpha1.OfficialAccountSubscriptionSpec{ReceivedTime: received},
		Status:     v1alpha1.OfficialAccountSubscriptionStatus{Sinks: deliveries},
	}
}

func TestBacklogSharesOf(t *testing.T) {
	failedTo := func(sink string) v1alpha1.SinkDelivery {
		return v1alpha1.SinkDelivery{Name: sink, State: v1alpha1.DeliveryFailed, Attempts: 3}
	}
	deadLetter := func(of, to string, state v1alpha1.DeliveryState) v1alpha1.SinkDelivery {
		return v1alpha1.SinkDelivery{Name: v1alpha1.DeadLetterName(of), DeadLetterOf: of, DeadLetterSink: to, State: state}
	}
	tests := []struct {
		name  string
		event *v1alpha1.OfficialAccountSubscription
		want  map[string]backlogShare
	}{
		{name: "a delivered event waits for nothing",
			event: eventWith("a", v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryDelivered})},
		{name: "a pending event waits since it was received",
			event: eventWith("a", v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryPending}),
			want:  map[string]backlogShare{"http": {pending: true, pendingSince: received}}},
		{name: "an attempted event is retrying",
			event: eventWith("a", v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryPending, Attempts: 2, FirstAttemptTime: &firstAttempt}),
			want:  map[string]backlogShare{"http": {pending: true, retrying: true, pendingSince: received}}},
		{name: "each sink gets its own share",
			event: eventWith("a", v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryPending},
				failedTo("pg"), v1alpha1.SinkDelivery{Name: "nats", State: v1alpha1.DeliveryDelivered}),
			want: map[string]backlogShare{"http": {pending: true, pendingSince: received}, "pg": {failed: true}}},
		{name: "a failed event without a dead letter is failed",
			event: eventWith("a", failedTo("http")),
			want:  map[string]backlogShare{"http": {failed: true}}},
		{name: "a dead letter on its way is pending at the dead-letter sink",
			event: eventWith("a", failedTo("http"), deadLetter("http", "dls", v1alpha1.DeliveryPending)),
			want: map[string]backlogShare{"http": {failed: true, deadLetter: v1alpha1.DeliveryPending},
				"dls": {pending: true, pendingSince: received}}},
		{name: "a delivered dead letter is dead-lettered",
			event: eventWith("a", failedTo("http"), deadLetter("http", "dls", v1alpha1.DeliveryDelivered)),
			want:  map[string]backlogShare{"http": {failed: true, deadLetter: v1alpha1.DeliveryDelivered}}},
		{name: "a failed dead letter is failed at the dead-letter sink",
			event: eventWith("a", failedTo("http"), deadLetter("http", "dls", v1alpha1.DeliveryFailed)),
			want: map[string]backlogShare{"http": {failed: true, deadLetter: v1alpha1.DeliveryFailed},
				"dls": {failed: true}}},
		{name: "a replay's pending delivery waits since its first attempt",
			event: eventWith("a", v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryDelivered},
				v1alpha1.SinkDelivery{Name: "replay/again", Replay: "again", ReplaySink: "http", State: v1alpha1.DeliveryPending,
					Attempts: 1, FirstAttemptTime: &firstAttempt}),
			want: map[string]backlogShare{"http": {pending: true, retrying: true, pendingSince: firstAttempt}}},
		{name: "a replay's failed delivery is the replay's to report",
			event: eventWith("a", v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryDelivered},
				v1alpha1.SinkDelivery{Name: "replay/again", Replay: "again", ReplaySink: "http", State: v1alpha1.DeliveryFailed})},
		{name: "an event pending at a sink for itself and for a replay counts once",
			event: eventWith("a", v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryPending, Attempts: 1, FirstAttemptTime: &firstAttempt},
				v1alpha1.SinkDelivery{Name: "replay/again", Replay: "again", ReplaySink: "http", State: v1alpha1.DeliveryPending}),
			want: map[string]backlogShare{"http": {pending: true, retrying: true, pendingSince: received}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := backlogSharesOf(tt.event)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("shares are %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestSinkBacklogsFollowTheInformer feeds the backlogs the notifications an informer gives
// its handlers over events' lives, and compares a sink's sum with what its events hold.
func TestSinkBacklogsFollowTheInformer(t *testing.T) {
	pending := v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryPending}
	retrying := v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryPending, Attempts: 1, FirstAttemptTime: &firstAttempt}
	delivered := v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryDelivered}
	failed := v1alpha1.SinkDelivery{Name: "http", State: v1alpha1.DeliveryFailed}
	deadLettered := v1alpha1.SinkDelivery{Name: v1alpha1.DeadLetterName("http"), DeadLetterOf: "http", DeadLetterSink: "dls",
		State: v1alpha1.DeliveryDelivered}
	deadLetterPending := v1alpha1.SinkDelivery{Name: v1alpha1.DeadLetterName("http"), DeadLetterOf: "http", DeadLetterSink: "dls",
		State: v1alpha1.DeliveryPending}
	storedAgain := func(sub *v1alpha1.OfficialAccountSubscription) *v1alpha1.OfficialAccountSubscription {
		sub.UID += "-again"
		return sub
	}
	older := func(sub *v1alpha1.OfficialAccountSubscription) *v1alpha1.OfficialAccountSubscription {
		sub.Spec.ReceivedTime = metav1.NewTime(received.Add(-time.Hour))
		return sub
	}
	elsewhere := func(sub *v1alpha1.OfficialAccountSubscription) *v1alpha1.OfficialAccountSubscription {
		sub.Namespace = "other"
		return sub
	}

	tests := []struct {
		name    string
		changes []notify
		sink    string // "http" when empty
		want    sinkBacklog
	}{
		{name: "no events, no backlog"},
		{name: "stored events are pending since the oldest was received",
			changes: []notify{added(eventWith("a", pending)), added(older(eventWith("b", retrying)))},
			want:    sinkBacklog{pending: 2, retrying: 1}.withOldest(received.Add(-time.Hour))},
		{name: "a delivered event leaves the backlog, and the oldest with it",
			changes: []notify{added(eventWith("a", pending)), added(older(eventWith("b", pending))),
				updated(older(eventWith("b", pending)), older(eventWith("b", delivered)))},
			want: sinkBacklog{pending: 1}.withOldest(received.Time)},
		{name: "a failed event is failed, a dead-lettered one dead-lettered",
			changes: []notify{added(eventWith("a", pending)), updated(eventWith("a", pending), eventWith("a", failed)),
				added(eventWith("b", failed, deadLettered))},
			want: sinkBacklog{failed: 1, deadLettered: 1}},
		{name: "a retried event comes back into the backlog",
			changes: []notify{added(eventWith("a", failed)), updated(eventWith("a", failed), eventWith("a", pending))},
			want:    sinkBacklog{pending: 1}.withOldest(received.Time)},
		{name: "a deleted event leaves the backlog",
			changes: []notify{added(eventWith("a", pending)), added(eventWith("b", failed)), deleted(eventWith("a", pending))},
			want:    sinkBacklog{failed: 1}},
		{name: "a delete the informer missed leaves it too",
			changes: []notify{added(eventWith("a", pending)), deletedUnseen(eventWith("a", pending))}},
		{name: "an event stored again under its name while the watch was down replaces the old",
			changes: []notify{added(older(eventWith("a", pending))), updated(older(eventWith("a", pending)), storedAgain(eventWith("a", pending)))},
			want:    sinkBacklog{pending: 1}.withOldest(received.Time)},
		{name: "an event both pending and failed at a sink counts as both",
			changes: []notify{added(eventWith("a", failed, deadLetterPending, v1alpha1.SinkDelivery{Name: "dls", State: v1alpha1.DeliveryFailed}))},
			sink:    "dls", want: sinkBacklog{pending: 1, failed: 1}.withOldest(received.Time)},
		{name: "a sink of the same name in another namespace is another sink",
			changes: []notify{added(eventWith("a", pending)), added(elsewhere(eventWith("b", pending)))},
			want:    sinkBacklog{pending: 1}.withOldest(received.Time)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newSinkBacklogs()
			for _, change := range tt.changes {
				change(b)
			}
			sink := cmp.Or(tt.sink, "http")
			got := b.Of(types.NamespacedName{Namespace: "events", Name: sink})
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("the backlog is %s, want %s", got, tt.want)
			}
		})
	}
}

// withOldest is the backlog with its oldest pending event received at t.
func (b sinkBacklog) withOldest(t time.Time) sinkBacklog {
	oldest := metav1.NewTime(t)
	b.oldestPending = &oldest
	return b
}

func (b sinkBacklog) String() string {
	return fmt.Sprintf("{pending %d retrying %d failed %d deadLettered %d oldestPending %v}",
		b.pending, b.retrying, b.failed, b.deadLettered, b.oldestPending)
}
