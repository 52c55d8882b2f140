package controllers

import (
	"context"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
)

// SetupWithManager watches subscriptions (their creation, the retry annotation, and the
// labels a replay sets) and the sinks they wait for. The reconciler's own status writes do
// not wake it: it schedules its next attempt itself.
func (r *SubscriptionReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Ledger == nil {
		r.Ledger = &delivery.Ledger{}
	}
	if r.Activity == nil {
		r.Activity = &delivery.SinkActivity{}
	}
	if r.Breakers == nil {
		r.Breakers = &delivery.Breakers{}
	}
	r.Breakers.ProbeDue = r.wakeOneHeld
	context.AfterFunc(ctx, r.Breakers.Stop)
	r.sinksAsOf = &delivery.SinksAsOf{Reader: r.APIReader}
	r.lanes = delivery.NewLanes(ctx.Done(), ctx)
	r.deliverer = &delivery.Deliverer{
		Cache:    r.Client,
		Resolver: &delivery.Resolver{Cache: r.Client, APIReader: r.APIReader, Registry: r.Sinks},
		Ledger:   r.Ledger, Activity: r.Activity, Recorder: r.Recorder, RecordDelivered: r.RecordDelivered, Now: r.Now,
		Breakers: r.Breakers, Limits: &delivery.RateLimits{}, CircuitClosed: r.wakeWaiting,
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.OfficialAccountSubscription{}, pendingSinkIndex, pendingSinks); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.OfficialAccountSubscription{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
				predicate.LabelChangedPredicate{}))).
		Watches(&v1alpha1.SubscriptionSink{}, r.sinkChanges(), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.SubscriptionReplay{}, r.replayDeleted()).
		WatchesRawSource(source.Channel(r.lanes.Requeue, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("officialaccountsubscription").
		Complete(r)
}

// pendingSinks indexes an event by the sinks whose delivery is pending, a replay's
// included.
func pendingSinks(obj client.Object) []string {
	var names []string
	for _, d := range obj.(*v1alpha1.OfficialAccountSubscription).Status.Sinks {
		if d.State == v1alpha1.DeliveryPending {
			names = append(names, d.TargetSink())
		}
	}
	return names
}

// WaitForDeliveries waits, until the deadline at most, for the deliveries under way to end
// and keep their outcomes, then cancels those still running. Call it once the manager has
// stopped, before WriteUnwrittenOutcomes.
func (r *SubscriptionReconciler) WaitForDeliveries(deadline time.Time) {
	if r.lanes != nil {
		r.lanes.Drain(deadline)
	}
}

// AbandonDeliveries cancels every delivery under way at once, when the lease is lost:
// another replica may lead already, and an attempt that goes on would race its.
func (r *SubscriptionReconciler) AbandonDeliveries() {
	if r.lanes != nil {
		r.lanes.Abandon()
	}
}
