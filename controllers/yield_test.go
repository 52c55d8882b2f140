package controllers

import (
	"context"
	"testing"
	"time"
)

// recordingStoreActivity records the waits a reconcile asks of the webhook, and the
// turns it ends.
type recordingStoreActivity struct {
	waits    []time.Duration
	released int
}

func (r *recordingStoreActivity) AdmitDelivery(_ context.Context, maxWait time.Duration) (func(), time.Duration) {
	r.waits = append(r.waits, maxWait)
	return func() { r.released++ }, 0
}

func TestYieldToIngest(t *testing.T) {
	tests := []struct {
		name      string
		webhook   bool
		maxWait   time.Duration
		wantWaits []time.Duration
	}{
		{name: "no webhook in this process", maxWait: time.Second},
		{name: "yielding off", webhook: true, maxWait: 0},
		{name: "gives way up to the max wait", webhook: true, maxWait: time.Second, wantWaits: []time.Duration{time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			webhook := &recordingStoreActivity{}
			r := &SubscriptionReconciler{YieldMaxWait: tt.maxWait}
			if tt.webhook {
				r.Ingest = webhook
			}
			r.yieldToIngest(context.Background())()
			if len(webhook.waits) != len(tt.wantWaits) || (len(tt.wantWaits) > 0 && webhook.waits[0] != tt.wantWaits[0]) {
				t.Fatalf("waits %v, want %v", webhook.waits, tt.wantWaits)
			}
			if webhook.released != len(webhook.waits) {
				t.Fatalf("%d turns taken, %d ended", len(webhook.waits), webhook.released)
			}
		})
	}
}
