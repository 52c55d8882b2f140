package delivery

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// Summarize computes the conditions and completion time of an event of that generation
// from its per-sink deliveries. It is the one place that decides what the status says.
// A replay's deliveries do not change Ready or Stalled (the replay reports them), but
// while one is pending the event is Reconciling and has no completion time, so that
// retention waits for it.
func Summarize(st *v1alpha1.OfficialAccountSubscriptionStatus, generation int64, now metav1.Time) {
	st.ObservedGeneration = generation
	pending, retrying, failed, missing := 0, 0, []v1alpha1.SinkDelivery{}, []v1alpha1.SinkDelivery{}
	listed, sinks, letters, replaying := 0, 0, 0, 0 // deliveries not a replay's; to the sinks matched; dead-lettered; replays pending
	for _, d := range st.Sinks {
		if d.Replay != "" {
			if d.State == v1alpha1.DeliveryPending {
				replaying++
			}
			continue
		}
		listed++
		if d.DeadLetterOf == "" {
			sinks++
		}
		switch d.State {
		case v1alpha1.DeliveryPending:
			pending++
			if d.SinkMissingSince != nil {
				missing = append(missing, d)
			} else if d.Attempts > 0 {
				retrying++
			}
		case v1alpha1.DeliveryFailed:
			switch {
			case d.DeadLetterOf != "": // the delivery it stands for stays failed, and says so
			case deadLetterState(st, d.Name) == v1alpha1.DeliveryDelivered:
				letters++
			case deadLetterState(st, d.Name) == v1alpha1.DeliveryPending: // counted as pending
			default:
				failed = append(failed, d)
			}
		}
	}

	ready := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: generation}
	switch {
	case sinks == 0:
		ready.Status, ready.Reason = metav1.ConditionTrue, v1alpha1.ReasonNoMatchingSinks
		ready.Message = "no SubscriptionSink in this namespace matched the event; nothing to deliver"
	case len(failed) > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonDeliveryFailed
		ready.Message = failureMessage(failed)
	case len(missing) > 0:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ReasonSinkNotFound, missing[0].LastError
	case retrying > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonRetrying
		ready.Message = fmt.Sprintf("%d of %d deliveries pending, %d retrying after an error", pending, listed, retrying)
	case pending > 0:
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonDelivering
		ready.Message = fmt.Sprintf("%d of %d deliveries pending", pending, listed)
	case letters > 0:
		ready.Status, ready.Reason = metav1.ConditionTrue, v1alpha1.ReasonDeadLettered
		ready.Message = fmt.Sprintf("delivered to %d of %d sink(s); the %d failed one(s) delivered to their dead-letter sink",
			sinks-letters, sinks, letters)
	default:
		ready.Status, ready.Reason = metav1.ConditionTrue, v1alpha1.ReasonDelivered
		ready.Message = fmt.Sprintf("delivered to %d sink(s)", sinks)
	}
	meta.SetStatusCondition(&st.Conditions, ready)

	switch {
	case pending > 0:
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionReconciling,
			Status: metav1.ConditionTrue, Reason: ready.Reason, Message: ready.Message, ObservedGeneration: generation})
		st.CompletionTime = nil
	case replaying > 0:
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionReconciling,
			Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReplaying,
			Message: fmt.Sprintf("%d replay deliveries pending", replaying), ObservedGeneration: generation})
		st.CompletionTime = nil
	default:
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionReconciling)
		if st.CompletionTime == nil {
			st.CompletionTime = &now
		}
	}
	if len(failed) > 0 {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionStalled,
			Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonDeliveryFailed, Message: ready.Message,
			ObservedGeneration: generation})
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
	}
}

func failureMessage(failed []v1alpha1.SinkDelivery) string {
	msg := fmt.Sprintf("delivery to sink %q failed after %d attempt(s): %s", failed[0].Name, failed[0].Attempts, failed[0].LastError)
	if len(failed) > 1 {
		msg += fmt.Sprintf(" (and %d more failed sink(s))", len(failed)-1)
	}
	return msg + fmt.Sprintf("; set the annotation %s to a new value to try again", v1alpha1.AnnotationRetry)
}

// retentionDeadline is when a finished resource is deleted: delivered ones are kept
// briefly for inspection, failed ones long enough for someone to look.
func retentionDeadline(st *v1alpha1.OfficialAccountSubscriptionStatus, delivered, failed time.Duration) (time.Time, bool) {
	if st.CompletionTime == nil {
		return time.Time{}, false
	}
	keep := delivered
	if !meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady) {
		keep = failed
	}
	return st.CompletionTime.Add(keep), true
}

// deliveredAndNotKept reports whether the event was delivered to every sink it matched and
// delivered events are not kept (--delivered-retention=0): its life then ends with its
// delivery, and it is deleted instead of getting a "Delivered" status that retention would
// delete at once. That is two API writes per event, a create and a delete, where a kept
// event costs three, and a status write is the costliest of them (docs/performance.md).
// An event that is retrying or failed still gets its status, and so does one that matched
// no sink (NoMatchingSinks), which tells of a missing sink.
func deliveredAndNotKept(st *v1alpha1.OfficialAccountSubscriptionStatus, retention time.Duration) bool {
	return retention == 0 && len(st.Sinks) > 0 && st.CompletionTime != nil &&
		meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionReady)
}
