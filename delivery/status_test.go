package delivery

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func TestSummarize(t *testing.T) {
	pending := v1alpha1.SinkDelivery{Name: "a", State: v1alpha1.DeliveryPending}
	retrying := v1alpha1.SinkDelivery{Name: "b", State: v1alpha1.DeliveryPending, Attempts: 2, LastError: "503"}
	delivered := v1alpha1.SinkDelivery{Name: "c", State: v1alpha1.DeliveryDelivered, Attempts: 1}
	failed := v1alpha1.SinkDelivery{Name: "d", State: v1alpha1.DeliveryFailed, Attempts: 1, LastError: "POST x: 400 Bad Request"}
	since := metav1.NewTime(time.Date(2026, 11, 25, 11, 59, 0, 0, time.UTC))
	missing := v1alpha1.SinkDelivery{Name: "e", State: v1alpha1.DeliveryPending, SinkMissingSince: &since,
		LastError: `SubscriptionSink "e" does not exist; waiting until 2026-11-25T12:09:00Z for a sink of that name`}
	tests := []struct {
		name                         string
		sinks                        []v1alpha1.SinkDelivery
		wantReady                    metav1.ConditionStatus
		wantReason                   string
		wantReconciling, wantStalled bool
		wantCompletion               bool
	}{
		{name: "no sink matched", wantReady: metav1.ConditionTrue, wantReason: v1alpha1.ReasonNoMatchingSinks, wantCompletion: true},
		{name: "first attempt pending", sinks: []v1alpha1.SinkDelivery{pending}, wantReady: metav1.ConditionFalse,
			wantReason: v1alpha1.ReasonDelivering, wantReconciling: true},
		{name: "retrying after errors", sinks: []v1alpha1.SinkDelivery{retrying, delivered}, wantReady: metav1.ConditionFalse,
			wantReason: v1alpha1.ReasonRetrying, wantReconciling: true},
		{name: "all delivered", sinks: []v1alpha1.SinkDelivery{delivered}, wantReady: metav1.ConditionTrue,
			wantReason: v1alpha1.ReasonDelivered, wantCompletion: true},
		{name: "one failed, one delivered", sinks: []v1alpha1.SinkDelivery{delivered, failed}, wantReady: metav1.ConditionFalse,
			wantReason: v1alpha1.ReasonDeliveryFailed, wantStalled: true, wantCompletion: true},
		{name: "a sink missing, another retrying", sinks: []v1alpha1.SinkDelivery{retrying, missing}, wantReady: metav1.ConditionFalse,
			wantReason: v1alpha1.ReasonSinkNotFound, wantReconciling: true},
		{name: "one failed, one sink missing", sinks: []v1alpha1.SinkDelivery{failed, missing}, wantReady: metav1.ConditionFalse,
			wantReason: v1alpha1.ReasonDeliveryFailed, wantStalled: true, wantReconciling: true},
		{name: "one failed, one still retrying", sinks: []v1alpha1.SinkDelivery{failed, retrying}, wantReady: metav1.ConditionFalse,
			wantReason: v1alpha1.ReasonDeliveryFailed, wantStalled: true, wantReconciling: true},
	}
	now := metav1.NewTime(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := &v1alpha1.OfficialAccountSubscription{}
			sub.Generation = 1
			sub.Status.Sinks = tt.sinks
			Summarize(&sub.Status, sub.Generation, now)
			ready := meta.FindStatusCondition(sub.Status.Conditions, v1alpha1.ConditionReady)
			if ready == nil || ready.Status != tt.wantReady || ready.Reason != tt.wantReason {
				t.Fatalf("Ready = %+v, want %s/%s", ready, tt.wantReady, tt.wantReason)
			}
			if got := meta.IsStatusConditionTrue(sub.Status.Conditions, v1alpha1.ConditionReconciling); got != tt.wantReconciling {
				t.Errorf("Reconciling = %v, want %v", got, tt.wantReconciling)
			}
			if got := meta.IsStatusConditionTrue(sub.Status.Conditions, v1alpha1.ConditionStalled); got != tt.wantStalled {
				t.Errorf("Stalled = %v, want %v", got, tt.wantStalled)
			}
			if got := sub.Status.CompletionTime != nil; got != tt.wantCompletion {
				t.Errorf("completionTime set = %v, want %v", got, tt.wantCompletion)
			}
			if tt.wantStalled && !contains(ready.Message, failed.LastError, v1alpha1.AnnotationRetry) {
				t.Errorf("the failure message %q does not say what failed and how to retry", ready.Message)
			}
		})
	}
}

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
