package controllers

import (
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
