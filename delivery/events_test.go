package delivery

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// --delivered-events=false drops the Normal Event of each delivery, never the Warning of a
// failure.
func TestDeliveredEventsSetting(t *testing.T) {
	tests := []struct {
		name            string
		recordDelivered bool
		deliveryErr     error
		wantEvent       string // reason of the one Event expected, or "" for none
	}{
		{name: "delivered, events on", recordDelivered: true, wantEvent: v1alpha1.ReasonDelivered},
		{name: "delivered, events off", recordDelivered: false},
		{name: "failed, events off", recordDelivered: false, deliveryErr: sinks.Permanent(errors.New("400 Bad Request")),
			wantEvent: v1alpha1.ReasonDeliveryFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recorder := events.NewFakeRecorder(10)
			dl := &Deliverer{Recorder: recorder, RecordDelivered: tt.recordDelivered}
			sub := &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Name: "event", Namespace: "events"}}
			sink := &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: "sink", Namespace: "events"}}
			d := &v1alpha1.SinkDelivery{Name: "sink", State: v1alpha1.DeliveryPending}
			dl.recordAttempt(context.Background(), sub, d, sink, time.Now(), tt.deliveryErr)

			var got []string
			for len(recorder.Events) > 0 {
				got = append(got, <-recorder.Events)
			}
			switch {
			case tt.wantEvent == "" && len(got) > 0:
				t.Fatalf("got Events %q, want none", got)
			case tt.wantEvent != "" && (len(got) != 1 || !strings.Contains(got[0], " "+tt.wantEvent+" ")):
				t.Fatalf("got Events %q, want one with reason %s", got, tt.wantEvent)
			}
		})
	}
}
