// Package controllers holds the reconcilers: one delivers OfficialAccountSubscriptions to
// their sinks, the other reports whether each SubscriptionSink can be delivered to.
package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// pendingSinkIndex indexes subscriptions by the sinks they still wait for, so that a sink
// that is resumed or repaired wakes exactly those. (A sink's backlog is counted by
// sinkBacklogs, not from an index.)
const pendingSinkIndex = "status.pendingSinks"

// cacheCatchUpDelay is how long a reconcile that found the cache behind its own last
// write waits before trying again.
const cacheCatchUpDelay = 50 * time.Millisecond

// StoreActivity is what a reconcile needs to give way to the webhook's stores (in the
// operator, a *storepressure.Pressure the webhook reports its stores to).
type StoreActivity interface {
	// AdmitDelivery waits until a delivery may start, maxWait at most; the delivery calls
	// release when it is done.
	AdmitDelivery(ctx context.Context, maxWait time.Duration) (release func(), waited time.Duration)
}

// statusWriteTimeout bounds a status write or a delete. The write has a context of its
// own, not the reconcile's: a reconcile cancelled by a shutdown after its sink accepted
// must still record that.
const statusWriteTimeout = 10 * time.Second

// laneFullRecheck is how long an event that found its sink's lane full waits at most
// before looking again, should the lane's own wake-up be lost with its term.
const laneFullRecheck = 30 * time.Second

// SubscriptionReconciler delivers each OfficialAccountSubscription to its sinks: it reads
// the event, has package delivery plan what to do, and does it.
type SubscriptionReconciler struct {
	client.Client
	// APIReader reads past the cache: the sinks as of an event, and events once the cache
	// has stopped.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Sinks     *sinks.Registry

	delivery.Settings
	MaxConcurrentReconciles int
	// RecordDelivered records a Normal Event on each resource delivered to a sink.
	RecordDelivered bool

	// Ingest, when set, is what this reconciler gives way to: while the webhook's stores
	// are slow, fewer reconciles run at once, and each waits up to YieldMaxWait for its
	// turn.
	Ingest       StoreActivity
	YieldMaxWait time.Duration

	// Now is the clock; tests leave it nil.
	Now func() time.Time

	// Ledger is what this process knows of the deliveries beyond their stored status; it
	// outlives a term. nil gives the reconciler one of its own.
	Ledger *delivery.Ledger
	// Activity collects, per sink, the last delivery and error, for the sinks' status;
	// nil gives the reconciler one of its own.
	Activity *delivery.SinkActivity
	// Breakers are the sinks' circuit breakers, shared with the sink reconciler that
	// shows them; nil gives the reconciler its own.
	Breakers *delivery.Breakers

	lanes     *delivery.Lanes
	deliverer *delivery.Deliverer
	sinksAsOf *delivery.SinksAsOf
}

// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=officialaccountsubscriptions,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=officialaccountsubscriptions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=subscriptionsinks,verbs=get;list;watch
// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=subscriptionreplays,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func (r *SubscriptionReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile reads the event, plans, and carries the plan out.
func (r *SubscriptionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	defer r.yieldToIngest(ctx)() // waits for this reconcile's turn; ends it on return
	// The cache's own copy, not a deep copy: the plan copies the status it changes, a write
	// replaces this struct's fields and nothing they point to (the lean client sets a few;
	// a typed client zeroes the object before it decodes its answer into it), and the
	// deliveries started get a copy of their own.
	var sub v1alpha1.OfficialAccountSubscription
	if err := r.Get(ctx, req.NamespacedName, &sub, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			r.Ledger.Forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sub.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	switch r.Ledger.Observe(&sub) {
	case delivery.Behind:
		return ctrl.Result{RequeueAfter: cacheCatchUpDelay}, nil
	case delivery.Deleted:
		return ctrl.Result{}, nil // the cache has yet to see the delete
	}
	in, err := r.planInput(ctx, &sub, false)
	if err != nil {
		return ctrl.Result{}, err
	}
	return r.execute(ctx, &sub, in.Sinks, delivery.Make(in))
}

// planInput gathers what a plan reads: the ledger's view, the sinks the event names as
// the cache has them (unless the term is over), and, when needed, the sinks that match it
// as of the event.
func (r *SubscriptionReconciler) planInput(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription, termOver bool) (delivery.Input, error) {
	in := delivery.Input{Event: sub, Ledger: r.Ledger.View(sub), Now: r.now(), Settings: r.Settings,
		Sinks: map[string]delivery.SinkState{}, TermOver: termOver}
	if delivery.NeedsMatching(sub, in.Ledger) {
		all, err := r.sinksAsOf.List(ctx, sub.Namespace, sub.ResourceVersion)
		if err != nil {
			return in, err
		}
		in.Matching = delivery.MatchingSinkNames(all, sub)
	}
	if termOver {
		return in, nil
	}
	replays, err := r.liveReplays(ctx, sub)
	if err != nil {
		return in, err
	}
	in.Replays = replays
	names := slices.Concat(in.Matching, in.Ledger.DeferredSinks)
	for _, d := range sub.Status.Sinks {
		names = append(names, d.TargetSink())
	}
	for _, replay := range replays {
		names = append(names, replay.Sink)
	}
	// The list grows by each sink's dead-letter sink: a delivery failing in this plan
	// starts its dead letter at once.
	for i := 0; i < len(names); i++ {
		name := names[i]
		if _, read := in.Sinks[name]; read {
			continue
		}
		var sink v1alpha1.SubscriptionSink // read only: the cache's copy
		err := r.Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: name}, &sink, client.UnsafeDisableDeepCopy)
		switch {
		case err == nil:
			in.Sinks[name] = delivery.StateOf(&sink, r.Breakers.Circuit(delivery.SinkKey(&sink), sink.Spec.CircuitBreaker, in.Now))
			if ref := sink.Spec.DeadLetterSinkRef; ref != nil {
				names = append(names, ref.Name)
			}
		case apierrors.IsNotFound(err):
			in.Sinks[name] = delivery.SinkState{}
		default:
			return in, fmt.Errorf("reading SubscriptionSink %q from the cache: %w", name, err)
		}
	}
	return in, nil
}

// liveReplays are the replays that labelled the event and still exist, as the cache has
// them: a label that names a replay deleted, or an earlier replay of the same name, adds
// nothing.
func (r *SubscriptionReconciler) liveReplays(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription) (map[string]delivery.ReplayTarget, error) {
	var live map[string]delivery.ReplayTarget
	for name, uid := range delivery.LabelledReplays(sub) {
		var replay v1alpha1.SubscriptionReplay // read only: the cache's copy
		err := r.Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: name}, &replay, client.UnsafeDisableDeepCopy)
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, fmt.Errorf("reading SubscriptionReplay %q from the cache: %w", name, err)
		}
		if replay.UID != uid || !replay.DeletionTimestamp.IsZero() {
			continue
		}
		if live == nil {
			live = map[string]delivery.ReplayTarget{}
		}
		live[name] = delivery.ReplayTarget{UID: replay.UID, Sink: replay.Spec.SinkName, Running: replay.Status.CompletionTime == nil}
	}
	return live, nil
}

// yieldToIngest waits for the reconcile's turn while the webhook's stores are slow, and
// returns what ends the turn. Storing is the one thing that cannot wait: Tencent gives up
// after 2 s and never retries, while a delivery of an event already stored loses nothing
// by starting a moment later.
func (r *SubscriptionReconciler) yieldToIngest(ctx context.Context) (release func()) {
	if r.Ingest == nil || r.YieldMaxWait <= 0 {
		return func() {}
	}
	release, waited := r.Ingest.AdmitDelivery(ctx, r.YieldMaxWait)
	yieldSeconds.Add(waited.Seconds())
	return release
}
