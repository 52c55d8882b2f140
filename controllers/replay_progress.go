package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
)

// follow counts the selected events' deliveries to the replay's sink. Retention keeps a
// running replay's events, so one that is gone was deleted by hand: it counts as failed.
func (r *ReplayReconciler) follow(ctx context.Context, replay *v1alpha1.SubscriptionReplay,
	st *v1alpha1.SubscriptionReplayStatus) (ctrl.Result, error) {
	var events v1alpha1.OfficialAccountSubscriptionList
	if err := r.List(ctx, &events, client.InNamespace(replay.Namespace), client.MatchingFields{replayIndex: replay.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing the replay's events from the cache: %w", err)
	}
	label, uid := v1alpha1.ReplayLabel(replay.Name), string(replay.UID)
	var pending, delivered, failed int32
	for i := range events.Items {
		ev := &events.Items[i]
		if ev.Labels[label] != uid {
			continue
		}
		switch delivery.ReplayDeliveryState(&ev.Status, replay.Name, replay.UID) {
		case v1alpha1.DeliveryDelivered:
			delivered++
		case v1alpha1.DeliveryFailed:
			failed++
		default:
			pending++
		}
	}
	// A selected event the cache does not list was deleted before its delivery ended; or,
	// just after the start, the cache has yet to see its label.
	unlisted := max(st.Matched-pending-delivered-failed, 0)
	if r.now().Sub(st.StartTime.Time) < replayCacheGrace {
		pending += unlisted
	} else {
		failed += unlisted
	}
	st.Pending, st.Delivered, st.Failed = pending, delivered, failed
	if pending > 0 {
		setRunning(st, replay.Generation, v1alpha1.ReasonReplaying,
			fmt.Sprintf("%d of %d events pending, %d delivered, %d failed", pending, st.Matched, delivered, failed))
		return ctrl.Result{RequeueAfter: replayProgressInterval}, nil
	}
	meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionReconciling)
	if st.CompletionTime == nil {
		done := r.now()
		st.CompletionTime = &done
	}
	setReady(st, replay.Generation, metav1.ConditionTrue, v1alpha1.ReasonComplete,
		fmt.Sprintf("%d of %d events delivered, %d failed", delivered, st.Matched, failed))
	return ctrl.Result{}, nil
}

func setReady(st *v1alpha1.SubscriptionReplayStatus, generation int64, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: status, Reason: reason,
		Message: message, ObservedGeneration: generation})
}

// setStalled marks a replay that cannot go on by itself: Stalled, and not Ready, for the
// same reason.
func setStalled(st *v1alpha1.SubscriptionReplayStatus, generation int64, reason, message string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue,
		Reason: reason, Message: message, ObservedGeneration: generation})
	setReady(st, generation, metav1.ConditionFalse, reason, message)
}

// setRunning marks a replay selecting or delivering its events: Reconciling, not yet Ready.
func setRunning(st *v1alpha1.SubscriptionReplayStatus, generation int64, reason, message string) {
	setReady(st, generation, metav1.ConditionFalse, reason, message)
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionReconciling, Status: metav1.ConditionTrue,
		Reason: reason, Message: message, ObservedGeneration: generation})
}

// selecting reports whether the replay started and has yet to label all its events.
func selecting(st *v1alpha1.SubscriptionReplayStatus) bool {
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReconciling)
	return c != nil && c.Reason == v1alpha1.ReasonSelecting
}
