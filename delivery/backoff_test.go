package delivery

import (
	"context"
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func TestNextAttemptDelay(t *testing.T) {
	defaults := retryPolicyOf(v1alpha1.RetryPolicy{})
	tests := []struct {
		name       string
		policy     retryPolicy
		attempts   int32
		retryAfter time.Duration
		want       time.Duration
	}{
		{name: "after the first failure", policy: defaults, attempts: 1, want: time.Second},
		{name: "doubles", policy: defaults, attempts: 2, want: 2 * time.Second},
		{name: "doubles again", policy: defaults, attempts: 4, want: 8 * time.Second},
		{name: "capped at five minutes", policy: defaults, attempts: 12, want: 5 * time.Minute},
		{name: "a huge attempt count stays capped", policy: defaults, attempts: 10_000, want: 5 * time.Minute},
		{name: "Retry-After longer than backoff wins", policy: defaults, attempts: 1, retryAfter: 30 * time.Second, want: 30 * time.Second},
		{name: "Retry-After shorter than backoff is ignored", policy: defaults, attempts: 5, retryAfter: time.Second, want: 16 * time.Second},
		{name: "Retry-After is capped", policy: defaults, attempts: 1, retryAfter: time.Hour, want: 5 * time.Minute},
		{name: "custom policy", policy: retryPolicyOf(v1alpha1.RetryPolicy{
			InitialInterval: &metav1.Duration{Duration: 100 * time.Millisecond},
			MaxInterval:     &metav1.Duration{Duration: 300 * time.Millisecond},
		}), attempts: 3, want: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.nextAttemptDelay(tt.attempts, tt.retryAfter); got != tt.want {
				t.Fatalf("nextAttemptDelay(%d, %s) = %s, want %s", tt.attempts, tt.retryAfter, got, tt.want)
			}
		})
	}
}

func TestExhausted(t *testing.T) {
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	defaults := retryPolicyOf(v1alpha1.RetryPolicy{})
	limited := retryPolicyOf(v1alpha1.RetryPolicy{MaxAttempts: ptr.To[int32](3)})
	tests := []struct {
		name     string
		policy   retryPolicy
		attempts int32
		now      time.Time
		want     bool
	}{
		{name: "fresh", policy: defaults, attempts: 1, now: first.Add(time.Minute), want: false},
		{name: "just inside 24h", policy: defaults, attempts: 300, now: first.Add(24*time.Hour - time.Second), want: false},
		{name: "24h passed", policy: defaults, attempts: 300, now: first.Add(24 * time.Hour), want: true},
		{name: "below max attempts", policy: limited, attempts: 2, now: first, want: false},
		{name: "max attempts reached", policy: limited, attempts: 3, now: first, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.exhausted(tt.attempts, first, tt.now); got != tt.want {
				t.Fatalf("exhausted(%d, %s) = %v, want %v", tt.attempts, tt.now.Sub(first), got, tt.want)
			}
		})
	}
}

// An attempt's wait counts from its end: one that ran into its timeout is not retried at
// once.
func TestRetryWaitsAfterTheAttemptEnds(t *testing.T) {
	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name           string
		took           time.Duration
		attemptsBefore int32
		want           time.Time
	}{
		{name: "a quick failure, rounded up to the second", took: 200 * time.Millisecond, want: started.Add(2 * time.Second)},
		{name: "a timeout longer than the interval", took: 10 * time.Second, want: started.Add(11 * time.Second)},
		{name: "the third attempt's timeout", took: 10 * time.Second, attemptsBefore: 2, want: started.Add(14 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dl := &Deliverer{Now: func() time.Time { return started.Add(tt.took) }}
			sub := &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Name: "event", Namespace: "events"}}
			sink := &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: "sink", Namespace: "events"}}
			d := &v1alpha1.SinkDelivery{Name: "sink", State: v1alpha1.DeliveryPending, Attempts: tt.attemptsBefore}
			dl.recordAttempt(context.Background(), sub, d, sink, started, errors.New("context deadline exceeded"))
			if d.State != v1alpha1.DeliveryPending || d.NextAttemptTime == nil {
				t.Fatalf("delivery %+v, want Pending with a next attempt", d)
			}
			if !d.NextAttemptTime.Time.Equal(tt.want) {
				t.Fatalf("next attempt at %v, want %v", d.NextAttemptTime.Time, tt.want)
			}
			if !d.LastAttemptTime.Time.Equal(started) {
				t.Fatalf("last attempt at %v, want its start %v", d.LastAttemptTime.Time, started)
			}
		})
	}
}
