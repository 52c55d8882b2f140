package delivery

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func TestReplaySelects(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	event := func(deliveries ...v1alpha1.SinkDelivery) *v1alpha1.OfficialAccountSubscription {
		sub := stored("", deliveries...)
		sub.Spec.SDKAppID, sub.Spec.OfficialAccount, sub.Spec.Action = "1400000000", "@TOA#_news", v1alpha1.ActionSubscribe
		sub.Spec.EventTime = at.UnixMilli()
		return sub
	}
	replay := func(mutate func(*v1alpha1.SubscriptionReplaySpec)) *v1alpha1.SubscriptionReplay {
		r := &v1alpha1.SubscriptionReplay{Spec: v1alpha1.SubscriptionReplaySpec{SinkName: "a"}}
		mutate(&r.Spec)
		return r
	}
	states := func(s ...v1alpha1.ReplayState) func(*v1alpha1.SubscriptionReplaySpec) {
		return func(spec *v1alpha1.SubscriptionReplaySpec) { spec.States = s }
	}
	window := func(after, before time.Time) func(*v1alpha1.SubscriptionReplaySpec) {
		return func(spec *v1alpha1.SubscriptionReplaySpec) {
			spec.States = []v1alpha1.ReplayState{v1alpha1.ReplayDelivered}
			spec.EventTimeAfter, spec.EventTimeBefore = &metav1.Time{Time: after}, &metav1.Time{Time: before}
		}
	}
	tests := []struct {
		name   string
		replay *v1alpha1.SubscriptionReplay
		event  *v1alpha1.OfficialAccountSubscription
		want   bool
	}{
		{"by default, a failed delivery to the sink", replay(states()), event(failedAt("a", 1)), true},
		{"by default, not a delivered one", replay(states()), event(deliveredTo("a", 1)), false},
		{"a delivered one, when asked", replay(states(v1alpha1.ReplayDelivered)), event(deliveredTo("a", 1)), true},
		{"never one still pending at the sink", replay(states(v1alpha1.ReplayDelivered, v1alpha1.ReplayFailed)), event(pendingTo("a")), false},
		{"the event's own state where it has no delivery to the sink (a backfill)",
			replay(states(v1alpha1.ReplayDelivered)), event(deliveredTo("b", 1)), true},
		{"an event that matched no sink", replay(states(v1alpha1.ReplayNoMatchingSinks)), event(), true},
		{"not an event still being delivered elsewhere", replay(states(v1alpha1.ReplayDelivered)), event(pendingTo("b")), false},
		{"within the window: after is inclusive", replay(window(at, at.Add(time.Second))), event(deliveredTo("a", 1)), true},
		{"within the window: before is exclusive", replay(window(at.Add(-time.Second), at)), event(deliveredTo("a", 1)), false},
		{"another account", replay(func(s *v1alpha1.SubscriptionReplaySpec) {
			s.States, s.OfficialAccounts = []v1alpha1.ReplayState{v1alpha1.ReplayFailed}, []string{"@TOA#_other"}
		}), event(failedAt("a", 1)), false},
		{"another action", replay(func(s *v1alpha1.SubscriptionReplaySpec) {
			s.States, s.Actions = []v1alpha1.ReplayState{v1alpha1.ReplayFailed}, []v1alpha1.Action{v1alpha1.ActionUnsubscribe}
		}), event(failedAt("a", 1)), false},
		{"another app", replay(func(s *v1alpha1.SubscriptionReplaySpec) {
			s.States, s.SDKAppIDs = []v1alpha1.ReplayState{v1alpha1.ReplayFailed}, []string{"1400000001"}
		}), event(failedAt("a", 1)), false},
		{"every filter met", replay(func(s *v1alpha1.SubscriptionReplaySpec) {
			s.States, s.SDKAppIDs, s.OfficialAccounts, s.Actions = []v1alpha1.ReplayState{v1alpha1.ReplayFailed},
				[]string{"1400000000"}, []string{"@TOA#_news"}, []v1alpha1.Action{v1alpha1.ActionSubscribe}
		}), event(failedAt("a", 1)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReplaySelects(tt.replay, tt.event); got != tt.want {
				t.Errorf("ReplaySelects = %v, want %v", got, tt.want)
			}
		})
	}
}

// An event whose retention a running replay holds looks again now and then, not at once
// and again at once.
func TestMakeRequeuesAnEventARunningReplayHolds(t *testing.T) {
	p := Make(Input{Event: stored("", deliveredTo("a", 1), replayDelivery(v1alpha1.DeliveryDelivered)), Sinks: bothSinks,
		Replays: runningReplayTo("a"), Now: planNow, Settings: Settings{DeliveredRetention: time.Second, FailedRetention: time.Hour}})
	if p.Delete || p.RequeueAfter != replayRetentionRecheck {
		t.Errorf("delete %v, requeue after %s; want kept, and looked at again after %s", p.Delete, p.RequeueAfter, replayRetentionRecheck)
	}
}

// Only the backlog of callbacks counts towards the webhook's cap, and a replay's pending
// delivery is dated from when it was added.
func TestOnlyReplaysPendingAndPendingSince(t *testing.T) {
	added := metav1.NewTime(planNow)
	replaying := replayDelivery(v1alpha1.DeliveryPending)
	replaying.FirstAttemptTime = &added
	tests := []struct {
		name  string
		event *v1alpha1.OfficialAccountSubscription
		only  bool
		since metav1.Time
	}{
		{"a new event", fresh(), false, fresh().Spec.ReceivedTime},
		{"a callback being delivered", stored("", pendingTo("a")), false, stored("").Spec.ReceivedTime},
		{"a callback being delivered while a replay resends it", stored("", pendingTo("a"), replaying), false, stored("").Spec.ReceivedTime},
		{"an event only a replay resends", stored("", deliveredTo("a", 1), replaying), true, added},
		{"an event whose replay ended", stored("", deliveredTo("a", 1), replayDelivery(v1alpha1.DeliveryDelivered)), false, stored("").Spec.ReceivedTime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OnlyReplaysPending(&tt.event.Status); got != tt.only {
				t.Errorf("OnlyReplaysPending = %v, want %v", got, tt.only)
			}
			if got := PendingSince(tt.event, "a"); !got.Equal(&tt.since) {
				t.Errorf("PendingSince = %s, want %s", got, tt.since)
			}
		})
	}
}
