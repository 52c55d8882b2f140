package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func TestUnwrittenOutcomes(t *testing.T) {
	event := func(uid types.UID, deliveries ...v1alpha1.SinkDelivery) *v1alpha1.OfficialAccountSubscription {
		return &v1alpha1.OfficialAccountSubscription{
			ObjectMeta: metav1.ObjectMeta{Namespace: "events", Name: "oasub-1", UID: uid},
			Status:     v1alpha1.OfficialAccountSubscriptionStatus{Sinks: deliveries},
		}
	}
	pending := v1alpha1.SinkDelivery{Name: "a", State: v1alpha1.DeliveryPending}
	delivered := v1alpha1.SinkDelivery{Name: "a", State: v1alpha1.DeliveryDelivered, Attempts: 1}
	retrying := v1alpha1.SinkDelivery{Name: "a", State: v1alpha1.DeliveryPending, Attempts: 2, LastError: "503"}

	tests := []struct {
		name        string
		remembered  []v1alpha1.SinkDelivery
		rememberUID types.UID
		written     bool
		status      *v1alpha1.OfficialAccountSubscription
		wantChanged bool
		want        v1alpha1.SinkDelivery
	}{
		{name: "a delivery whose write failed is taken, not made again",
			remembered: []v1alpha1.SinkDelivery{delivered}, rememberUID: "u1",
			status: event("u1", pending), wantChanged: true, want: delivered},
		{name: "a status never written gets the remembered delivery",
			remembered: []v1alpha1.SinkDelivery{delivered}, rememberUID: "u1",
			status: event("u1"), wantChanged: true, want: delivered},
		{name: "the latest of several attempts wins",
			remembered: []v1alpha1.SinkDelivery{retrying, {Name: "a", State: v1alpha1.DeliveryDelivered, Attempts: 3}}, rememberUID: "u1",
			status: event("u1", pending), wantChanged: true, want: v1alpha1.SinkDelivery{Name: "a", State: v1alpha1.DeliveryDelivered, Attempts: 3}},
		{name: "a status that already has the outcome is left as it is",
			remembered: []v1alpha1.SinkDelivery{delivered}, rememberUID: "u1",
			status: event("u1", delivered), want: delivered},
		{name: "a status newer than the outcome is left as it is",
			remembered: []v1alpha1.SinkDelivery{delivered}, rememberUID: "u1",
			status: event("u1", retrying), want: retrying},
		{name: "an object re-created under the same name does not inherit outcomes",
			remembered: []v1alpha1.SinkDelivery{delivered}, rememberUID: "u1",
			status: event("u2", pending), want: pending},
		{name: "once written, nothing is kept",
			remembered: []v1alpha1.SinkDelivery{delivered}, rememberUID: "u1", written: true,
			status: event("u1", pending), want: pending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o UnwrittenOutcomes
			for _, d := range tt.remembered {
				o.remember(event(tt.rememberUID), d)
			}
			if tt.written {
				o.recorded(event(tt.rememberUID, tt.remembered...))
			}
			changed := o.applyTo(tt.status)
			if changed != tt.wantChanged {
				t.Errorf("applyTo changed = %v, want %v", changed, tt.wantChanged)
			}
			if got := tt.status.Status.Sinks[0]; got.State != tt.want.State || got.Attempts != tt.want.Attempts {
				t.Errorf("delivery = %s after %d attempts, want %s after %d", got.State, got.Attempts, tt.want.State, tt.want.Attempts)
			}
			if wantKeys := len(tt.remembered) > 0 && !tt.written; (len(o.keys()) == 1) != wantKeys {
				t.Errorf("keys = %v", o.keys())
			}
		})
	}
}

// A status written while another sink's delivery ended records only what it holds: the
// other outcome must survive, or that sink would get the event again.
func TestRecordedKeepsOutcomesTheStatusLacks(t *testing.T) {
	sub := &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: "events", Name: "oasub-1", UID: "u1"}}
	var o UnwrittenOutcomes
	o.remember(sub, v1alpha1.SinkDelivery{Name: "a", State: v1alpha1.DeliveryDelivered, Attempts: 1})
	o.remember(sub, v1alpha1.SinkDelivery{Name: "b", State: v1alpha1.DeliveryDelivered, Attempts: 1})

	written := sub.DeepCopy()
	written.Status.Sinks = []v1alpha1.SinkDelivery{
		{Name: "a", State: v1alpha1.DeliveryDelivered, Attempts: 1},
		{Name: "b", State: v1alpha1.DeliveryPending},
	}
	o.recorded(written)

	if !o.attemptedSince(sub, &v1alpha1.SinkDelivery{Name: "b"}) {
		t.Fatal("the outcome for sink b, which the written status lacks, was dropped")
	}
	if o.attemptedSince(sub, &v1alpha1.SinkDelivery{Name: "a"}) {
		t.Fatal("the outcome for sink a, which the written status records, was kept")
	}
	written.Status.Sinks[1] = v1alpha1.SinkDelivery{Name: "b", State: v1alpha1.DeliveryDelivered, Attempts: 1}
	o.recorded(written)
	if len(o.keys()) != 0 {
		t.Fatalf("outcomes kept after a status recorded them all: %v", o.keys())
	}
}
