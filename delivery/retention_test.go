package delivery

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func TestDeliveredAndNotKept(t *testing.T) {
	delivered := v1alpha1.SinkDelivery{Name: "a", State: v1alpha1.DeliveryDelivered}
	tests := []struct {
		name      string
		retention time.Duration
		sinks     []v1alpha1.SinkDelivery
		ready     metav1.ConditionStatus
		complete  bool
		want      bool
	}{
		{name: "delivered, not kept", sinks: []v1alpha1.SinkDelivery{delivered}, ready: metav1.ConditionTrue, complete: true, want: true},
		{name: "delivered, kept", retention: time.Minute, sinks: []v1alpha1.SinkDelivery{delivered}, ready: metav1.ConditionTrue, complete: true},
		{name: "still pending", sinks: []v1alpha1.SinkDelivery{{Name: "a", State: v1alpha1.DeliveryPending}}, ready: metav1.ConditionFalse},
		{name: "failed", sinks: []v1alpha1.SinkDelivery{{Name: "a", State: v1alpha1.DeliveryFailed}}, ready: metav1.ConditionFalse, complete: true},
		{name: "matched no sink", ready: metav1.ConditionTrue, complete: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := &v1alpha1.OfficialAccountSubscription{Status: v1alpha1.OfficialAccountSubscriptionStatus{Sinks: tt.sinks}}
			meta.SetStatusCondition(&sub.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: tt.ready, Reason: "Test"})
			if tt.complete {
				now := metav1.Now()
				sub.Status.CompletionTime = &now
			}
			if got := deliveredAndNotKept(&sub.Status, tt.retention); got != tt.want {
				t.Fatalf("deliveredAndNotKept = %v, want %v", got, tt.want)
			}
		})
	}
}
