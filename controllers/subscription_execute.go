package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
)

// execute carries a plan out: the deliveries first, then the delete, the deferral or the
// status write.
func (r *SubscriptionReconciler) execute(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription,
	sinks map[string]delivery.SinkState, p delivery.Plan) (ctrl.Result, error) {
	if p.NewRound {
		r.Ledger.NewRound(sub, p.Status.LastHandledRetry, p.Reset)
	}
	for _, d := range p.GaveUp {
		r.deliverer.GaveUp(sub, d)
	}
	requeue := p.RequeueAfter
	if laneFull := r.startDeliveries(ctx, sub, sinks, p); laneFull && (requeue == 0 || requeue > laneFullRecheck) {
		requeue = laneFullRecheck
	}
	switch {
	case p.Delete:
		return ctrl.Result{}, r.deleteEvent(ctx, sub)
	case !p.DeferredSince.IsZero():
		r.Ledger.Defer(sub, p.DeferredSince, names(p.Status.Sinks))
	case p.Write:
		sub.Status = p.Status
		if err := r.writeStatus(ctx, sub); err != nil {
			return ctrl.Result{}, err
		}
	}
	if r.resumedMeanwhile(ctx, sub.Namespace, p.WaitsForResume) {
		requeue = cacheCatchUpDelay
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// resumedMeanwhile reports whether a sink the plan found suspended has resumed since. The
// resume's wake lists the events waiting for the sink from the cache, which does not have
// this event's status yet if it is being written now: the event looks again by itself.
func (r *SubscriptionReconciler) resumedMeanwhile(ctx context.Context, namespace string, sinks []string) bool {
	for _, name := range sinks {
		var sink v1alpha1.SubscriptionSink
		err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &sink, client.UnsafeDisableDeepCopy)
		if err == nil && !sink.Spec.Suspend {
			return true
		}
	}
	return false
}

// startDeliveries hands the plan's deliveries to their sinks' lanes, each unless the ledger
// has it under way already; it reports whether a lane was full.
func (r *SubscriptionReconciler) startDeliveries(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription,
	sinks map[string]delivery.SinkState, p delivery.Plan) (laneFull bool) {
	if len(p.Start) == 0 {
		return false
	}
	event := sub.DeepCopy()
	event.Status = p.Status
	for _, d := range p.Start {
		if !r.Ledger.Begin(event, d.Name, p.Status.LastHandledRetry, d.Attempts) {
			continue
		}
		if !r.lanes.Start(r.deliverer.Job(ctx, event, d), sinks[d.TargetSink()].MaxInFlight) {
			r.Ledger.Abandon(event, d.Name)
			laneFull = true
		}
	}
	return laneFull
}

// writeStatus stores sub's status with a deadline of its own and records it in the ledger.
// An object deleted meanwhile needs no status.
//
// It is an update of the status subresource, not a patch: its resourceVersion makes a
// write from a stale cache fail with a conflict (which requeues) instead of undoing a newer
// status, as a patch's optimistic lock would, but the object is encoded once, with no
// merge patch to compute here and none to apply at the API server, the one write every
// delivered event pays for.
func (r *SubscriptionReconciler) writeStatus(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
	defer cancel()
	err := r.Status().Update(ctx, sub)
	switch {
	case err == nil:
		r.Ledger.Written(sub)
		return nil
	case apierrors.IsNotFound(err):
		r.Ledger.Forget(client.ObjectKeyFromObject(sub))
		return nil
	}
	return fmt.Errorf("writing status: %w", err)
}

// deleteEvent ends an event's life, when retention expires or once it is delivered and
// not kept (see delivery.Plan). The ledger keeps a tombstone until the cache has seen the
// delete: a reconcile queued meanwhile would find the object without a status and take
// it for a new event.
func (r *SubscriptionReconciler) deleteEvent(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
	defer cancel()
	// The resourceVersion too: a replay may have labelled the event since the cache's copy.
	if err := r.Delete(ctx, sub, client.Preconditions{UID: &sub.UID, ResourceVersion: &sub.ResourceVersion}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the event: %w", err)
	}
	r.Ledger.Deleted(sub)
	return nil
}

// names are the sinks of the deliveries that matching made, for the first-write deferral:
// a replay's delivery is not one (its label adds it again).
func names(deliveries []v1alpha1.SinkDelivery) []string {
	out := make([]string, 0, len(deliveries))
	for _, d := range deliveries {
		if d.Replay == "" {
			out = append(out, d.Name)
		}
	}
	return out
}
