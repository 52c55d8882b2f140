package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func TestDeferIfUnderWay(t *testing.T) {
	pending := func(name string) v1alpha1.SinkDelivery {
		return v1alpha1.SinkDelivery{Name: name, State: v1alpha1.DeliveryPending}
	}
	tests := []struct {
		name       string
		deliveries []v1alpha1.SinkDelivery
		lanes      handedOff
		want       bool
	}{
		{name: "every delivery under way: put off",
			deliveries: []v1alpha1.SinkDelivery{pending("a"), pending("b")},
			lanes:      handedOff{underWay: map[string]bool{"a": true, "b": true}}, want: true},
		{name: "one delivery held (suspended, or its sink missing): written now",
			deliveries: []v1alpha1.SinkDelivery{pending("a"), pending("b")},
			lanes:      handedOff{underWay: map[string]bool{"a": true}}},
		{name: "waiting for a place in a full lane: put off too",
			deliveries: []v1alpha1.SinkDelivery{pending("a")},
			lanes:      handedOff{underWay: map[string]bool{"a": true}, laneFull: true}, want: true},
		{name: "no sink matched: written now", lanes: handedOff{underWay: map[string]bool{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d deferredFirstWrites
			sub := &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: "events", Name: "oasub-1", UID: "u1"}}
			sub.Status.Sinks = tt.deliveries
			start := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
			if got := d.deferIfUnderWay(sub, tt.lanes, start); (got > 0) != tt.want {
				t.Fatalf("deferIfUnderWay = %v, want put off: %v", got, tt.want)
			}
			if !tt.want {
				return
			}
			if got := d.deferIfUnderWay(sub, tt.lanes, start.Add(400*time.Millisecond)); got != firstWriteDeferral-400*time.Millisecond {
				t.Fatalf("a second look put it off for %v, want the rest of firstWriteDeferral", got)
			}
			if got := d.deferIfUnderWay(sub, tt.lanes, start.Add(firstWriteDeferral)); got != 0 {
				t.Fatalf("put off for %v after firstWriteDeferral had passed", got)
			}
			if names, ok := d.matched(sub); !ok || len(names) != len(tt.deliveries) {
				t.Fatalf("matched = %v, %v; want the sinks of the first match", names, ok)
			}
			other := sub.DeepCopy()
			other.UID = "u2"
			if _, ok := d.matched(other); ok {
				t.Fatal("an event re-created under the same name inherited the match")
			}
			d.written(types.NamespacedName{Namespace: "events", Name: "oasub-1"})
			if _, ok := d.matched(sub); ok {
				t.Fatal("the match was kept after the status was written")
			}
		})
	}
}
