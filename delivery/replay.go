package delivery

import (
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// A SubscriptionReplay selects events by labelling them (the label is the frozen
// selection); each labelled event then gets a delivery entry of its own for the replay,
// "replay/<name>", which goes to the replay's sink through that sink's lanes, breaker and
// rate limit, with its retries. The entry does not change the event's Ready condition,
// gets no dead letter, and is left alone by the retry annotation; while it is pending the
// event is not deleted by retention. A replay that is deleted (or replaced by one of
// the same name) starts nothing more: its pending entries are dropped once no delivery of
// them is under way.

// ReplayTarget is a live replay that labelled the event: which one (its UID), where its
// delivery goes, and whether it is still running.
type ReplayTarget struct {
	UID  types.UID
	Sink string
	// Running: the replay has not completed; retention keeps every event it selected, so
	// that its counts hold until it has.
	Running bool
}

// LabelledReplays are the replays whose label the event carries, by name, with the UID
// each label names.
func LabelledReplays(sub *v1alpha1.OfficialAccountSubscription) map[string]types.UID {
	var out map[string]types.UID
	for key, value := range sub.Labels {
		name, ok := strings.CutPrefix(key, v1alpha1.LabelReplayPrefix)
		if !ok {
			continue
		}
		if out == nil {
			out = map[string]types.UID{}
		}
		out[name] = types.UID(value)
	}
	return out
}

// addReplays gives the event a pending delivery for each live replay that labelled it and
// has none yet; a delivery of an earlier replay of the same name that is not under way is
// replaced. Its give-up window starts now: the event may be days old.
func addReplays(st *v1alpha1.OfficialAccountSubscriptionStatus, replays map[string]ReplayTarget, inFlight map[string]bool, now time.Time) {
	added := false
	for name, target := range replays {
		entry := v1alpha1.ReplayDeliveryName(name)
		i := slices.IndexFunc(st.Sinks, func(d v1alpha1.SinkDelivery) bool { return d.Name == entry })
		if i >= 0 && (st.Sinks[i].ReplayUID == string(target.UID) || inFlight[entry]) {
			continue
		}
		since := StatusTime(now)
		d := v1alpha1.SinkDelivery{Name: entry, State: v1alpha1.DeliveryPending, FirstAttemptTime: &since,
			Replay: name, ReplaySink: target.Sink, ReplayUID: string(target.UID)}
		if i >= 0 {
			st.Sinks[i] = d
			continue
		}
		st.Sinks = append(st.Sinks, d)
		added = true
	}
	if added {
		sortByName(st.Sinks)
	}
}

// dropStoppedReplays removes the pending deliveries of replays that are gone, unless one is
// under way: its outcome is recorded, and if it is to be retried, it is dropped then.
func dropStoppedReplays(st *v1alpha1.OfficialAccountSubscriptionStatus, replays map[string]ReplayTarget, inFlight map[string]bool) {
	st.Sinks = slices.DeleteFunc(st.Sinks, func(d v1alpha1.SinkDelivery) bool {
		target, live := replays[d.Replay]
		live = live && string(target.UID) == d.ReplayUID
		return d.Replay != "" && !live && d.State == v1alpha1.DeliveryPending && !inFlight[d.Name]
	})
}

// holdsRetention reports whether a replay keeps the event from retention: one that is
// still running selected it (its counts must not lose the event), or one has selected it
// and its delivery is not listed yet.
func holdsRetention(st *v1alpha1.OfficialAccountSubscriptionStatus, replays map[string]ReplayTarget) bool {
	for name, target := range replays {
		if target.Running || ReplayDeliveryState(st, name, target.UID) == "" {
			return true
		}
	}
	return false
}

// OnlyReplaysPending reports whether every delivery the event still waits for is a
// replay's: such an event is no part of the backlog that the webhook's pending cap guards
// (a replay must never make the webhook refuse Tencent's callbacks).
func OnlyReplaysPending(st *v1alpha1.OfficialAccountSubscriptionStatus) bool {
	replaying := false
	for _, d := range st.Sinks {
		if d.State != v1alpha1.DeliveryPending {
			continue
		}
		if d.Replay == "" {
			return false
		}
		replaying = true
	}
	return replaying
}

// PendingSince is when the event began to wait for the sink: its receipt, or, for a
// replay's delivery, when the replay added it.
func PendingSince(sub *v1alpha1.OfficialAccountSubscription, sink string) metav1.Time {
	since := sub.Spec.ReceivedTime
	for _, d := range sub.Status.Sinks {
		if d.TargetSink() == sink && d.State == v1alpha1.DeliveryPending && d.Replay == "" {
			return since
		}
	}
	for _, d := range sub.Status.Sinks {
		if d.TargetSink() == sink && d.State == v1alpha1.DeliveryPending && d.FirstAttemptTime != nil {
			since = *d.FirstAttemptTime
		}
	}
	return since
}

// ReplaySelects applies a replay's filter to an event as it is now: its account, action,
// app, event time, and its state at the replay's sink. An event still being delivered
// there is not selected.
func ReplaySelects(replay *v1alpha1.SubscriptionReplay, sub *v1alpha1.OfficialAccountSubscription) bool {
	spec := &replay.Spec
	if (len(spec.OfficialAccounts) > 0 && !slices.Contains(spec.OfficialAccounts, sub.Spec.OfficialAccount)) ||
		(len(spec.Actions) > 0 && !slices.Contains(spec.Actions, sub.Spec.Action)) ||
		(len(spec.SDKAppIDs) > 0 && !slices.Contains(spec.SDKAppIDs, sub.Spec.SDKAppID)) {
		return false
	}
	at := time.UnixMilli(sub.Spec.EventTime)
	if (spec.EventTimeAfter != nil && at.Before(spec.EventTimeAfter.Time)) ||
		(spec.EventTimeBefore != nil && !at.Before(spec.EventTimeBefore.Time)) {
		return false
	}
	states := spec.States
	if len(states) == 0 {
		states = []v1alpha1.ReplayState{v1alpha1.ReplayFailed}
	}
	state, ok := replayStateOf(sub, spec.SinkName)
	return ok && slices.Contains(states, state)
}

// replayStateOf is the state a replay's filter reads: the event's delivery to the sink, or,
// where it has none, the event's own state; false while either is still pending.
func replayStateOf(sub *v1alpha1.OfficialAccountSubscription, sink string) (v1alpha1.ReplayState, bool) {
	for _, d := range sub.Status.Sinks {
		if d.Name != sink {
			continue
		}
		switch d.State {
		case v1alpha1.DeliveryDelivered:
			return v1alpha1.ReplayDelivered, true
		case v1alpha1.DeliveryFailed:
			return v1alpha1.ReplayFailed, true
		}
		return "", false
	}
	ready := meta.FindStatusCondition(sub.Status.Conditions, v1alpha1.ConditionReady)
	switch {
	case ready == nil:
		return "", false
	case ready.Reason == v1alpha1.ReasonNoMatchingSinks:
		return v1alpha1.ReplayNoMatchingSinks, true
	case ready.Reason == v1alpha1.ReasonDeliveryFailed:
		return v1alpha1.ReplayFailed, true
	case ready.Status == "True": // Delivered, or DeadLettered
		return v1alpha1.ReplayDelivered, true
	}
	return "", false
}

// ReplayDeliveryState is the state of the event's delivery for the replay of that name
// and UID; "" when it has none yet.
func ReplayDeliveryState(st *v1alpha1.OfficialAccountSubscriptionStatus, replay string, uid types.UID) v1alpha1.DeliveryState {
	entry := v1alpha1.ReplayDeliveryName(replay)
	if i := slices.IndexFunc(st.Sinks, func(d v1alpha1.SinkDelivery) bool { return d.Name == entry }); i >= 0 &&
		st.Sinks[i].ReplayUID == string(uid) {
		return st.Sinks[i].State
	}
	return ""
}
