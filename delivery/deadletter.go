package delivery

import (
	"slices"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// addDeadLetters gives each failed delivery whose sink names a dead-letter sink its dead
// letter: a delivery of the event, once, to that sink, with that sink's retries and lanes.
// A dead letter that fails is not dead-lettered again (one hop), and one exists per failed
// delivery per round: the retry annotation drops it with the round (see rematch).
// It reports whether it added one.
func addDeadLetters(st *v1alpha1.OfficialAccountSubscriptionStatus, sinkStates map[string]SinkState) bool {
	added := false
	for _, d := range st.Sinks {
		if d.State != v1alpha1.DeliveryFailed || d.DeadLetterOf != "" || d.Replay != "" {
			continue
		}
		target := sinkStates[d.Name].DeadLetterSink
		name := v1alpha1.DeadLetterName(d.Name)
		if target == "" || slices.ContainsFunc(st.Sinks, func(o v1alpha1.SinkDelivery) bool { return o.Name == name }) {
			continue
		}
		st.Sinks = append(st.Sinks, v1alpha1.SinkDelivery{Name: name, State: v1alpha1.DeliveryPending,
			DeadLetterOf: d.Name, DeadLetterSink: target})
		added = true
	}
	if added {
		sortByName(st.Sinks)
	}
	return added
}

// deadLetterState is the state of the dead letter of the delivery to the sink named, ""
// when it has none.
func deadLetterState(st *v1alpha1.OfficialAccountSubscriptionStatus, sink string) v1alpha1.DeliveryState {
	name := v1alpha1.DeadLetterName(sink)
	if i := slices.IndexFunc(st.Sinks, func(d v1alpha1.SinkDelivery) bool { return d.Name == name }); i >= 0 {
		return st.Sinks[i].State
	}
	return ""
}

// DeadLetterState is the state of the dead letter of the event's delivery to the sink, ""
// when it has none, for the sink's counts.
func DeadLetterState(sub *v1alpha1.OfficialAccountSubscription, sink string) v1alpha1.DeliveryState {
	return deadLetterState(&sub.Status, sink)
}

// deadLetterOf is what a dead letter carries of the failed delivery it stands for.
func deadLetterOf(st *v1alpha1.OfficialAccountSubscriptionStatus, d v1alpha1.SinkDelivery) *sinks.DeadLetter {
	if d.DeadLetterOf == "" {
		return nil
	}
	dl := &sinks.DeadLetter{Sink: d.DeadLetterOf}
	if i := slices.IndexFunc(st.Sinks, func(o v1alpha1.SinkDelivery) bool { return o.Name == d.DeadLetterOf }); i >= 0 {
		dl.Reason, dl.Error = st.Sinks[i].FailureReason, st.Sinks[i].LastError
	}
	return dl
}
