package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// TestPendingCountFollowsTheInformer feeds the count the notifications an informer gives
// its handlers over events' lives, and compares it with a count of the live events.
func TestPendingCountFollowsTheInformer(t *testing.T) {
	const ns = "events"
	event := func(name string, change func(*v1alpha1.OfficialAccountSubscription)) *v1alpha1.OfficialAccountSubscription {
		sub := &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.OfficialAccountSubscriptionSpec{Action: v1alpha1.ActionSubscribe}}
		if change != nil {
			change(sub)
		}
		return sub
	}
	completed := func(sub *v1alpha1.OfficialAccountSubscription) { sub.Status.CompletionTime = &metav1.Time{} }
	snapshot := func(sub *v1alpha1.OfficialAccountSubscription) { sub.Spec.Action = v1alpha1.ActionSnapshot }
	waitsForReplay := func(sub *v1alpha1.OfficialAccountSubscription) {
		sub.Status.Sinks = []v1alpha1.SinkDelivery{
			{Name: "a", State: v1alpha1.DeliveryDelivered},
			{Name: "replay/again", Replay: "again", State: v1alpha1.DeliveryPending},
		}
	}
	elsewhere := func(sub *v1alpha1.OfficialAccountSubscription) { sub.Namespace = "other" }

	tests := []struct {
		name    string
		changes []notify
		want    int
	}{
		{name: "stored events count", changes: []notify{added(event("a", nil)), added(event("b", nil))}, want: 2},
		{name: "a completed event leaves the count",
			changes: []notify{added(event("a", nil)), added(event("b", nil)), updated(event("a", nil), event("a", completed))}, want: 1},
		{name: "a retried event comes back into the count",
			changes: []notify{added(event("a", completed)), updated(event("a", completed), event("a", nil))}, want: 1},
		{name: "an update that changes nothing that counts moves nothing",
			changes: []notify{added(event("a", nil)), updated(event("a", nil), event("a", nil))}, want: 1},
		{name: "a deleted event leaves the count, completed or not",
			changes: []notify{added(event("a", nil)), added(event("b", completed)), deleted(event("a", nil)), deleted(event("b", completed))}, want: 0},
		{name: "a delete the informer missed leaves it too",
			changes: []notify{added(event("a", nil)), added(event("b", nil)), deletedUnseen(event("a", nil))}, want: 1},
		{name: "snapshot parts have a budget of their own",
			changes: []notify{added(event("a", snapshot)), added(event("b", nil))}, want: 1},
		{name: "an event waiting only for a replay does not count",
			changes: []notify{added(event("a", nil)), updated(event("a", nil), event("a", waitsForReplay))}, want: 0},
		{name: "a delete of an event never seen leaves no negative count",
			changes: []notify{deleted(event("a", nil))}, want: 0},
		{name: "another namespace's events do not count",
			changes: []notify{added(event("a", elsewhere)), updated(event("a", elsewhere), event("a", elsewhere)), added(event("b", nil))}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &pendingCount{namespace: ns}
			for _, change := range tt.changes {
				change(c)
			}
			if got := c.Pending(); got != tt.want {
				t.Fatalf("pending = %d, want %d", got, tt.want)
			}
		})
	}
}
