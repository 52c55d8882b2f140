package controllers

import (
	"context"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
)

// wakeListTimeout bounds listing a sink's waiting events from the cache.
const wakeListTimeout = 10 * time.Second

// sinkChanges handles a sink's creation, deletion and spec changes (the watch's predicate
// passes nothing else: a sink's status writes wake no event). The events waiting for the
// sink are woken at the pace of its lane, not put in the work queue all at once; a spec
// change also closes the sink's circuit, since its configuration deserves a new chance.
func (r *SubscriptionReconciler) sinkChanges() handler.TypedEventHandler[client.Object, reconcile.Request] {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, _ queue) {
			r.wakeWaiting(client.ObjectKeyFromObject(e.Object))
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, _ queue) {
			key := client.ObjectKeyFromObject(e.ObjectNew)
			r.Breakers.Reset(key.String())
			r.wakeWaiting(key)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, _ queue) {
			key := client.ObjectKeyFromObject(e.Object)
			r.Breakers.Forget(key.String())
			r.deliverer.Limits.Forget(key.String())
			r.wakeWaiting(key)
		},
	}
}

// wakeRelistDelay is when a wake lists the sink's waiting events a second time: an event
// whose status was being written as the sink changed is in the cache's index by then.
const wakeRelistDelay = time.Second

// wakeWaiting reconciles again, at the pace of the sink's lane, the events still waiting
// to be delivered to it, and a moment later those the cache did not list yet.
func (r *SubscriptionReconciler) wakeWaiting(sink types.NamespacedName) {
	events := r.eventsWaitingFor(sink)
	limit := delivery.MaxInFlight(nil)
	var s v1alpha1.SubscriptionSink
	if err := r.Get(context.Background(), sink, &s); err == nil {
		limit = delivery.MaxInFlight(s.Spec.MaxInFlight)
	}
	r.lanes.WakePaced(sink.String(), events, limit)
	woken := make(map[types.NamespacedName]bool, len(events))
	for _, key := range events {
		woken[key] = true
	}
	time.AfterFunc(wakeRelistDelay, func() {
		for _, key := range r.eventsWaitingFor(sink) {
			if !woken[key] {
				r.lanes.ReconcileAgain(key)
			}
		}
	})
}

// wakeOneHeld reconciles one held delivery of the sink, whose circuit's probe is due: its
// plan starts it whatever its own next attempt time, and the breaker admits it as the probe.
func (r *SubscriptionReconciler) wakeOneHeld(sink string) {
	ns, name, _ := strings.Cut(sink, "/")
	for _, sub := range r.listWaitingFor(types.NamespacedName{Namespace: ns, Name: name}) {
		key := types.NamespacedName{Namespace: ns, Name: sub.Name}
		for _, d := range sub.Status.Sinks {
			if d.State == v1alpha1.DeliveryPending && d.TargetSink() == name && !r.Ledger.InFlight(key, d.Name) {
				r.lanes.ReconcileAgain(key)
				return
			}
		}
	}
}

// eventsWaitingFor names the events whose delivery to the sink is pending.
func (r *SubscriptionReconciler) eventsWaitingFor(sink types.NamespacedName) []types.NamespacedName {
	waiting := r.listWaitingFor(sink)
	keys := make([]types.NamespacedName, len(waiting))
	for i := range waiting {
		keys[i] = types.NamespacedName{Namespace: waiting[i].Namespace, Name: waiting[i].Name}
	}
	return keys
}

// listWaitingFor lists the events whose delivery to the sink is pending, from the cache's
// index, without copying them: they are the cache's own, to read and not to change.
func (r *SubscriptionReconciler) listWaitingFor(sink types.NamespacedName) []v1alpha1.OfficialAccountSubscription {
	ctx, cancel := context.WithTimeout(context.Background(), wakeListTimeout)
	defer cancel()
	var list v1alpha1.OfficialAccountSubscriptionList
	if err := r.List(ctx, &list, client.InNamespace(sink.Namespace), client.MatchingFields{pendingSinkIndex: sink.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		logf.FromContext(ctx).Error(err, "listing the events waiting for a sink", "sink", sink.String())
		return nil
	}
	return list.Items
}

// replayDeleted wakes the events a deleted replay selected: its pending deliveries are
// dropped at their next reconcile, which may otherwise be far off (a suspended sink's
// deliveries have no time of their own), holding the events from retention meanwhile.
func (r *SubscriptionReconciler) replayDeleted() handler.TypedEventHandler[client.Object, reconcile.Request] {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	return handler.Funcs{
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) {
			ctx, cancel := context.WithTimeout(ctx, wakeListTimeout)
			defer cancel()
			var events v1alpha1.OfficialAccountSubscriptionList
			if err := r.List(ctx, &events, client.InNamespace(e.Object.GetNamespace()),
				client.MatchingFields{replayIndex: e.Object.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
				logf.FromContext(ctx).Error(err, "listing a deleted replay's events", "replay", e.Object.GetName())
				return
			}
			for i := range events.Items {
				q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&events.Items[i])})
			}
		},
	}
}
