package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// With --delivered-retention=0 nobody looks at a delivered event again, so its life ends
// with its delivery: the event is deleted instead of getting a "Delivered" status that
// retention would delete at once. That is two API writes per event, a create and a
// delete, where a kept event costs three, and a status write is the costliest of them
// (docs/performance.md). An event that is retrying or failed still gets its status.

// deliveredAndNotKept reports whether sub was delivered to every sink it matched and
// delivered events are not kept. An event that matched no sink still gets its status
// (NoMatchingSinks), which tells of a missing sink.
func (r *SubscriptionReconciler) deliveredAndNotKept(sub *v1alpha1.OfficialAccountSubscription) bool {
	return r.DeliveredRetention == 0 && len(sub.Status.Sinks) > 0 && sub.Status.CompletionTime != nil &&
		meta.IsStatusConditionTrue(sub.Status.Conditions, v1alpha1.ConditionReady)
}

// deleteEvent ends an event's life, when retention expires or once it is delivered and
// not kept, and forgets what was kept for its status. Until the delete succeeds its
// outcomes stay remembered, so a retry delivers nothing again.
func (r *SubscriptionReconciler) deleteEvent(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
	defer cancel()
	if err := r.Delete(ctx, sub, client.Preconditions{UID: &sub.UID}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the event: %w", err)
	}
	key := client.ObjectKeyFromObject(sub)
	r.Outcomes.forget(key)
	r.firstWrites.written(key)
	return nil
}
