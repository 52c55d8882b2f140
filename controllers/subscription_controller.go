// Package controllers holds the reconcilers: one delivers OfficialAccountSubscriptions to
// their sinks, the other reports whether each SubscriptionSink can be delivered to.
package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// pendingSinkIndex indexes subscriptions by the sinks they still wait for, so that a sink
// that is resumed or repaired wakes exactly those.
const pendingSinkIndex = "status.pendingSinks"

// cacheCatchUpDelay is how long a reconcile that found the cache behind its own last
// write waits before trying again.
const cacheCatchUpDelay = 50 * time.Millisecond

// StoreActivity is what a reconcile needs of the webhook server to give way to it.
type StoreActivity interface {
	// AdmitDelivery waits until a delivery may start, maxWait at most; the delivery calls
	// release when it is done.
	AdmitDelivery(ctx context.Context, maxWait time.Duration) (release func(), waited time.Duration)
}

// statusWriteTimeout bounds a status write. The write has a context of its own, not the
// reconcile's: a reconcile cancelled by a shutdown after its sink accepted must still
// record that.
const statusWriteTimeout = 10 * time.Second

// SubscriptionReconciler delivers each OfficialAccountSubscription to its sinks.
type SubscriptionReconciler struct {
	client.Client
	// APIReader reads past the cache, for writing outcomes once the cache has stopped.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Sinks     *sinks.Registry

	DeliveredRetention      time.Duration
	FailedRetention         time.Duration
	MaxConcurrentReconciles int
	// RecordDelivered records a Normal Event on each resource delivered to a sink. It is one
	// more API write per delivery; failures are recorded whatever its value.
	RecordDelivered bool

	// Ingest, when set, is the webhook server this reconciler gives way to: while its
	// stores are slow, fewer reconciles run at once, and each waits up to YieldMaxWait for
	// its turn.
	Ingest       StoreActivity
	YieldMaxWait time.Duration

	// Now is the clock; tests leave it nil.
	Now func() time.Time

	// written holds, per object, the resourceVersion of the last status this reconciler
	// wrote, until the cache has caught up with it.
	written sync.Map // client.ObjectKey -> string

	// Outcomes are the delivery outcomes whose status write has not succeeded yet; nil
	// gives the reconciler a store of its own.
	Outcomes *UnwrittenOutcomes
}

// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=officialaccountsubscriptions,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=officialaccountsubscriptions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=subscriptionsinks,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func (r *SubscriptionReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile delivers what is due, writes the status once, and asks to come back when the
// next attempt or the retention deadline is due.
func (r *SubscriptionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// Waits for this reconcile's turn now, and ends the turn when the reconcile returns.
	defer r.yieldToIngest(ctx)()
	var sub v1alpha1.OfficialAccountSubscription
	if err := r.Get(ctx, req.NamespacedName, &sub); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.Delete(req.NamespacedName)
			r.Outcomes.written(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sub.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if r.cacheIsBehind(&sub) {
		return ctrl.Result{RequeueAfter: cacheCatchUpDelay}, nil
	}
	now := r.now()
	if deadline, ok := retentionDeadline(&sub, r.DeliveredRetention, r.FailedRetention); ok && !now.Before(deadline) {
		logf.FromContext(ctx).V(1).Info("retention expired, deleting")
		return ctrl.Result{}, client.IgnoreNotFound(r.Delete(ctx, &sub, client.Preconditions{UID: &sub.UID}))
	}

	// The optimistic lock makes a write from a stale cache fail instead of undoing a newer
	// status; the conflict requeues.
	original := sub.DeepCopy()
	patch := client.MergeFromWithOptions(original, client.MergeFromWithOptimisticLock{})
	if sub.Status.ObservedGeneration == 0 {
		if err := r.recordMatchingSinks(ctx, &sub); err != nil {
			return ctrl.Result{}, err
		}
	}
	// Outcomes an earlier reconcile could not write come first: their sinks have answered.
	r.Outcomes.applyTo(&sub)
	r.handleRetryRequest(&sub)
	r.deliverDue(ctx, &sub)
	summarize(&sub, metav1Now(r.now()))

	// A reconcile that changed nothing writes nothing: a leader that starts, or a cache
	// that resyncs, would otherwise send one PATCH per stored event, competing with the
	// webhook's creates. (The optimistic lock's resourceVersion makes no patch empty.)
	if equality.Semantic.DeepEqual(original.Status, sub.Status) {
		r.Outcomes.written(req.NamespacedName) // any it kept, the status has already
		return ctrl.Result{RequeueAfter: r.requeueAfter(&sub)}, nil
	}
	if err := r.writeStatus(ctx, &sub, patch); err != nil {
		return ctrl.Result{}, err
	}
	r.written.Store(client.ObjectKeyFromObject(&sub), sub.ResourceVersion)
	return ctrl.Result{RequeueAfter: r.requeueAfter(&sub)}, nil
}

// writeStatus patches the status with a deadline of its own and, once it is stored,
// forgets the outcomes it records. An object deleted meanwhile needs no status.
func (r *SubscriptionReconciler) writeStatus(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription, patch client.Patch) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
	defer cancel()
	err := r.Status().Patch(ctx, sub, patch)
	if err == nil || apierrors.IsNotFound(err) {
		r.Outcomes.written(client.ObjectKeyFromObject(sub))
		return nil
	}
	return fmt.Errorf("writing status: %w", err)
}

// yieldToIngest waits for the reconcile's turn while the webhook's stores are slow, and
// returns what ends the turn. Storing is the one thing that cannot wait: Tencent gives up
// after 2 s and never retries, while a delivery of an event already stored loses nothing
// by starting a moment later. When the API server cannot keep up with both, its capacity
// goes first to the creates, and deliveries catch up after.
func (r *SubscriptionReconciler) yieldToIngest(ctx context.Context) (release func()) {
	if r.Ingest == nil || r.YieldMaxWait <= 0 {
		return func() {}
	}
	release, waited := r.Ingest.AdmitDelivery(ctx, r.YieldMaxWait)
	yieldSeconds.Add(waited.Seconds())
	return release
}

// cacheIsBehind reports whether the cache still holds an older status than this
// reconciler last wrote for the object. A reconcile queued meanwhile (a sink changed, say)
// would otherwise read the old status and deliver a second time. Rather than block a
// worker until the watch catches up, the reconcile is retried a moment later.
func (r *SubscriptionReconciler) cacheIsBehind(sub *v1alpha1.OfficialAccountSubscription) bool {
	key := client.ObjectKeyFromObject(sub)
	written, ok := r.written.Load(key)
	if !ok {
		return false
	}
	if resourceVersionAtLeast(sub.ResourceVersion, written.(string)) {
		r.written.CompareAndDelete(key, written)
		return false
	}
	return true
}

// recordMatchingSinks fixes, at the first reconcile, which sinks the event goes to. Sinks
// created later do not receive it: they start from the events after them.
func (r *SubscriptionReconciler) recordMatchingSinks(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription) error {
	var list v1alpha1.SubscriptionSinkList
	if err := r.List(ctx, &list, client.InNamespace(sub.Namespace)); err != nil {
		return fmt.Errorf("listing SubscriptionSinks: %w", err)
	}
	sub.Status.Sinks = nil
	for i := range list.Items {
		if sinkMatches(&list.Items[i], sub) {
			sub.Status.Sinks = append(sub.Status.Sinks, v1alpha1.SinkDelivery{Name: list.Items[i].Name, State: v1alpha1.DeliveryPending})
		}
	}
	sortByName(sub.Status.Sinks)
	sub.Status.LastHandledRetry = sub.Annotations[v1alpha1.AnnotationRetry]
	return nil
}

// sortByName keeps an event's deliveries in the order of their sinks' names, so that its
// status reads, and compares, the same however the sinks were listed.
func sortByName(deliveries []v1alpha1.SinkDelivery) {
	slices.SortFunc(deliveries, func(a, b v1alpha1.SinkDelivery) int { return strings.Compare(a.Name, b.Name) })
}

// sinkMatches applies a sink's filters; an empty filter matches everything.
func sinkMatches(sink *v1alpha1.SubscriptionSink, sub *v1alpha1.OfficialAccountSubscription) bool {
	return (len(sink.Spec.SDKAppIDs) == 0 || slices.Contains(sink.Spec.SDKAppIDs, sub.Spec.SDKAppID)) &&
		(len(sink.Spec.OfficialAccounts) == 0 || slices.Contains(sink.Spec.OfficialAccounts, sub.Spec.OfficialAccount)) &&
		(len(sink.Spec.Actions) == 0 || slices.Contains(sink.Spec.Actions, sub.Spec.Action))
}

// handleRetryRequest starts a new round for failed deliveries when the retry annotation
// has a value not yet acted on.
func (r *SubscriptionReconciler) handleRetryRequest(sub *v1alpha1.OfficialAccountSubscription) {
	value := sub.Annotations[v1alpha1.AnnotationRetry]
	if value == sub.Status.LastHandledRetry {
		return
	}
	sub.Status.LastHandledRetry = value
	for i := range sub.Status.Sinks {
		d := &sub.Status.Sinks[i]
		if d.State == v1alpha1.DeliveryFailed {
			*d = v1alpha1.SinkDelivery{Name: d.Name, State: v1alpha1.DeliveryPending, LastError: d.LastError}
		}
	}
}

// deliverDue makes one attempt for each pending delivery whose time has come.
func (r *SubscriptionReconciler) deliverDue(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription) {
	for i := range sub.Status.Sinks {
		d := &sub.Status.Sinks[i]
		if d.State != v1alpha1.DeliveryPending || (d.NextAttemptTime != nil && d.NextAttemptTime.After(r.now())) {
			continue
		}
		r.deliverTo(ctx, sub, d)
		r.Outcomes.remember(sub, *d)
	}
}

func (r *SubscriptionReconciler) deliverTo(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription, d *v1alpha1.SinkDelivery) {
	var sink v1alpha1.SubscriptionSink
	err := r.Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: d.Name}, &sink)
	if apierrors.IsNotFound(err) {
		r.fail(sub, d, fmt.Sprintf("SubscriptionSink %q no longer exists", d.Name))
		return
	}
	if err == nil && sink.Spec.Suspend {
		// No time of its own: the sink watch wakes the delivery when the sink resumes.
		d.NextAttemptTime = nil
		return
	}
	var target sinks.Sink
	if err == nil {
		target, err = (&sinkResolver{client: r.Client, apiReader: r.APIReader, registry: r.Sinks}).resolve(ctx, &sink)
	}
	start := r.now()
	if err == nil {
		err = target.Deliver(ctx, sub)
		deliveryDuration.WithLabelValues(registryKey(&sink)).Observe(r.now().Sub(start).Seconds())
	}
	r.recordAttempt(ctx, sub, d, &sink, start, err)
}

// recordAttempt writes an attempt's outcome into the delivery and decides what comes next.
func (r *SubscriptionReconciler) recordAttempt(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription, d *v1alpha1.SinkDelivery,
	sink *v1alpha1.SubscriptionSink, at time.Time, err error) {
	attemptTime := metav1Now(at)
	d.Attempts++
	d.LastAttemptTime = &attemptTime
	if d.FirstAttemptTime == nil {
		d.FirstAttemptTime = &attemptTime
	}
	d.NextAttemptTime = nil
	sinkLabel := sub.Namespace + "/" + d.Name
	logf.FromContext(ctx).V(1).Info("delivery attempt", "sink", d.Name, "attempt", d.Attempts, "error", errString(err))
	if err == nil {
		d.State, d.DeliveredTime, d.LastError = v1alpha1.DeliveryDelivered, &attemptTime, ""
		deliveriesTotal.WithLabelValues(sinkLabel, "delivered").Inc()
		if r.RecordDelivered {
			r.Recorder.Eventf(sub, sink, corev1.EventTypeNormal, v1alpha1.ReasonDelivered, "Deliver",
				"delivered to sink %s on attempt %d", d.Name, d.Attempts)
		}
		return
	}
	policy := retryPolicyOf(sink.Spec.Retry)
	if sinks.IsPermanent(err) || policy.exhausted(d.Attempts, d.FirstAttemptTime.Time, at) {
		r.fail(sub, d, err.Error())
		return
	}
	deliveriesTotal.WithLabelValues(sinkLabel, "retry").Inc()
	d.LastError = truncate(err.Error())
	next := metav1Later(at.Add(policy.nextAttemptDelay(d.Attempts, sinks.RetryAfter(err))))
	d.NextAttemptTime = &next
}

func (r *SubscriptionReconciler) fail(sub *v1alpha1.OfficialAccountSubscription, d *v1alpha1.SinkDelivery, reason string) {
	d.State, d.NextAttemptTime, d.LastError = v1alpha1.DeliveryFailed, nil, truncate(reason)
	deliveriesTotal.WithLabelValues(sub.Namespace+"/"+d.Name, "failed").Inc()
	r.Recorder.Eventf(sub, nil, corev1.EventTypeWarning, v1alpha1.ReasonDeliveryFailed, "Deliver",
		"delivery to sink %s failed: %s", d.Name, d.LastError)
}

// requeueAfter is the time until the soonest due attempt or retention deadline.
func (r *SubscriptionReconciler) requeueAfter(sub *v1alpha1.OfficialAccountSubscription) time.Duration {
	now := r.now()
	var soonest time.Time
	consider := func(t time.Time) {
		if soonest.IsZero() || t.Before(soonest) {
			soonest = t
		}
	}
	for _, d := range sub.Status.Sinks {
		if d.State == v1alpha1.DeliveryPending && d.NextAttemptTime != nil {
			consider(d.NextAttemptTime.Time)
		}
	}
	if deadline, ok := retentionDeadline(sub, r.DeliveredRetention, r.FailedRetention); ok {
		consider(deadline)
	}
	if soonest.IsZero() {
		return 0
	}
	// Never 0 once something is due: RequeueAfter 0 would mean "do not requeue".
	return max(soonest.Sub(now), time.Millisecond)
}

// SetupWithManager watches subscriptions (their creation, and the retry annotation) and
// the sinks they wait for. The reconciler's own status writes do not wake it: it
// schedules its next attempt itself.
func (r *SubscriptionReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Outcomes == nil {
		r.Outcomes = &UnwrittenOutcomes{}
	}
	err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.OfficialAccountSubscription{}, pendingSinkIndex,
		func(obj client.Object) []string {
			var names []string
			for _, d := range obj.(*v1alpha1.OfficialAccountSubscription).Status.Sinks {
				if d.State == v1alpha1.DeliveryPending {
					names = append(names, d.Name)
				}
			}
			return names
		})
	if err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.OfficialAccountSubscription{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&v1alpha1.SubscriptionSink{}, handler.EnqueueRequestsFromMapFunc(r.subscriptionsWaitingFor)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("officialaccountsubscription").
		Complete(r)
}

// subscriptionsWaitingFor maps a sink to the subscriptions still waiting to be delivered
// to it.
func (r *SubscriptionReconciler) subscriptionsWaitingFor(ctx context.Context, sink client.Object) []reconcile.Request {
	return requestsFromIndex(ctx, r.Client, &v1alpha1.OfficialAccountSubscriptionList{}, sink, pendingSinkIndex)
}
