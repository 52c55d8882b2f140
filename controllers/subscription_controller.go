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
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// pendingSinkIndex indexes subscriptions by the sinks they still wait for, so that a sink
// that is resumed or repaired wakes exactly those, and each sink's backlog is counted.
// failedSinkIndex does the same for the sinks they gave up on.
const (
	pendingSinkIndex = "status.pendingSinks"
	failedSinkIndex  = "status.failedSinks"
)

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

	// Activity collects, per sink, the last delivery and error, for the sinks' status;
	// nil gives the reconciler one of its own.
	Activity *SinkActivity

	// SinkNotFoundGrace is how long a delivery whose sink is missing waits for a sink of
	// that name to come back before it fails.
	SinkNotFoundGrace time.Duration

	// lanes run the deliveries, each sink with its own in-flight limit.
	lanes *deliveryLanes
	// sinks lists the sinks an event matches, as of the event.
	sinks *sinksAsOf
	// firstWrites are the new events whose first status write waits for their deliveries.
	firstWrites deferredFirstWrites
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
			r.Outcomes.forget(req.NamespacedName)
			r.firstWrites.written(req.NamespacedName)
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
		return ctrl.Result{}, r.deleteEvent(ctx, &sub)
	}

	// The optimistic lock makes a write from a stale cache fail instead of undoing a newer
	// status; the conflict requeues.
	original := sub.DeepCopy()
	patch := client.MergeFromWithOptions(original, client.MergeFromWithOptimisticLock{})
	firstReconcile := sub.Status.ObservedGeneration == 0
	if firstReconcile {
		if err := r.recordMatchingSinks(ctx, &sub); err != nil {
			return ctrl.Result{}, err
		}
	}
	// Outcomes not written yet come first: their sinks have answered.
	r.Outcomes.applyTo(&sub)
	if err := r.handleRetryRequest(ctx, &sub); err != nil {
		return ctrl.Result{}, err
	}
	lanes := r.deliverDue(ctx, &sub)
	summarize(&sub, metav1Now(r.now()))

	// A reconcile that changed nothing writes nothing: a leader that starts, or a cache
	// that resyncs, would otherwise send one PATCH per stored event, competing with the
	// webhook's creates. (The optimistic lock's resourceVersion makes no patch empty.)
	if equality.Semantic.DeepEqual(original.Status, sub.Status) {
		r.Outcomes.recorded(&sub) // any it kept that the status already has
		return ctrl.Result{RequeueAfter: r.requeueAfter(&sub, lanes)}, nil
	}
	if firstReconcile {
		if wait := r.firstWrites.deferIfUnderWay(&sub, lanes, r.now()); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
	}
	if r.deliveredAndNotKept(&sub) {
		return ctrl.Result{}, r.deleteEvent(ctx, &sub)
	}
	if err := r.writeStatus(ctx, &sub, patch); err != nil {
		return ctrl.Result{}, err
	}
	r.firstWrites.written(req.NamespacedName)
	r.written.Store(client.ObjectKeyFromObject(&sub), sub.ResourceVersion)
	return ctrl.Result{RequeueAfter: r.requeueAfter(&sub, lanes)}, nil
}

// writeStatus patches the status with a deadline of its own and, once it is stored,
// forgets the outcomes it records. An object deleted meanwhile needs no status.
func (r *SubscriptionReconciler) writeStatus(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription, patch client.Patch) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
	defer cancel()
	err := r.Status().Patch(ctx, sub, patch)
	switch {
	case err == nil:
		r.Outcomes.recorded(sub)
		return nil
	case apierrors.IsNotFound(err):
		r.Outcomes.forget(client.ObjectKeyFromObject(sub))
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

// recordMatchingSinks fixes, at the first reconcile, which sinks the event goes to: every
// matching sink created before it. Sinks created later do not receive it: they start from
// the events after them (the retry annotation adds them). An event whose first write was
// put off keeps the sinks it was matched with then.
func (r *SubscriptionReconciler) recordMatchingSinks(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription) error {
	names, ok := r.firstWrites.matched(sub)
	if !ok {
		all, err := r.sinks.list(ctx, sub.Namespace, sub.ResourceVersion)
		if err != nil {
			return err
		}
		names = matchingSinkNames(all, sub)
	}
	sub.Status.Sinks = nil
	for _, name := range names {
		sub.Status.Sinks = append(sub.Status.Sinks, v1alpha1.SinkDelivery{Name: name, State: v1alpha1.DeliveryPending})
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

// handleRetryRequest re-matches the event (see rematch) when the retry annotation has a
// value not yet acted on.
func (r *SubscriptionReconciler) handleRetryRequest(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription) error {
	value := sub.Annotations[v1alpha1.AnnotationRetry]
	if value == sub.Status.LastHandledRetry {
		return nil
	}
	all, err := r.sinks.list(ctx, sub.Namespace, sub.ResourceVersion)
	if err != nil {
		return err
	}
	sub.Status.Sinks = rematch(sub.Status.Sinks, matchingSinkNames(all, sub))
	sub.Status.LastHandledRetry = value
	return nil
}

// handedOff is what deliverDue left to the sinks' lanes: deliveries under way, whose end
// queues the event again, and whether some lane was full.
type handedOff struct {
	underWay map[string]bool
	laneFull bool
}

// deliverDue hands each pending delivery whose time has come to its sink's lane.
func (r *SubscriptionReconciler) deliverDue(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription) handedOff {
	out := handedOff{underWay: map[string]bool{}}
	for i := range sub.Status.Sinks {
		d := &sub.Status.Sinks[i]
		due := d.NextAttemptTime == nil || !d.NextAttemptTime.After(r.now()) || d.SinkMissingSince != nil
		if d.State != v1alpha1.DeliveryPending || !due {
			continue
		}
		switch r.startDelivery(ctx, sub, d) {
		case handOffStarted, handOffUnderWay:
			out.underWay[d.Name] = true
		case handOffLaneFull:
			out.underWay[d.Name], out.laneFull = true, true
		}
	}
	return out
}

// notHandedOff marks a delivery that stays with the reconcile: suspended, or waiting for
// its sink to exist.
const notHandedOff handOff = -1

// startDelivery starts one attempt in the sink's lane, unless the sink is suspended or
// missing, which the delivery's status records instead.
func (r *SubscriptionReconciler) startDelivery(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription, d *v1alpha1.SinkDelivery) handOff {
	var sink v1alpha1.SubscriptionSink
	err := r.Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: d.Name}, &sink)
	switch {
	case apierrors.IsNotFound(err):
		r.awaitMissingSink(sub, d)
		return notHandedOff
	case err != nil:
		// The cache answers from memory; an error here is a bug, not a sink's fault.
		logf.FromContext(ctx).Error(err, "reading the sink from the cache", "sink", d.Name)
		return notHandedOff
	}
	if d.SinkMissingSince != nil {
		d.SinkMissingSince, d.NextAttemptTime, d.LastError = nil, nil, ""
	}
	if sink.Spec.Suspend {
		// No time of its own: the sink watch wakes the delivery when the sink resumes.
		d.NextAttemptTime = nil
		return notHandedOff
	}
	event, attempt := sub.DeepCopy(), *d.DeepCopy()
	log := logf.FromContext(ctx)
	return r.lanes.start(deliveryID{event: sub.UID, sink: registryKey(&sink)}, client.ObjectKeyFromObject(sub),
		maxInFlight(sink.Spec.MaxInFlight),
		func() bool { return r.Outcomes.attemptedSince(sub, d) },
		func(ctx context.Context) { r.attempt(logf.IntoContext(ctx, log), event, attempt, &sink) })
}

// attempt delivers the event to the sink once, in the sink's lane, and keeps the outcome
// for the reconcile that writes it.
func (r *SubscriptionReconciler) attempt(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription, d v1alpha1.SinkDelivery,
	sink *v1alpha1.SubscriptionSink) {
	target, err := (&sinkResolver{client: r.Client, apiReader: r.APIReader, registry: r.Sinks}).resolve(ctx, sink)
	start := r.now()
	if err == nil {
		err = target.Deliver(ctx, sub)
		deliveryDuration.WithLabelValues(registryKey(sink)).Observe(r.now().Sub(start).Seconds())
	}
	r.recordAttempt(ctx, sub, &d, sink, start, err)
	r.Outcomes.remember(sub, d)
	r.Activity.record(registryKey(sink), start, err)
}

// awaitMissingSink gives a delivery whose sink does not exist a grace period in which a
// sink of that name coming back (deleted and re-created by Helm or Argo CD) resumes it;
// after that, the delivery fails.
func (r *SubscriptionReconciler) awaitMissingSink(sub *v1alpha1.OfficialAccountSubscription, d *v1alpha1.SinkDelivery) {
	now := r.now()
	if d.SinkMissingSince == nil {
		since := metav1Now(now)
		d.SinkMissingSince = &since
	}
	deadline := d.SinkMissingSince.Add(r.SinkNotFoundGrace)
	if !now.Before(deadline) {
		r.fail(sub, d, fmt.Sprintf("SubscriptionSink %q does not exist, and none of that name came back within %s",
			d.Name, r.SinkNotFoundGrace))
		return
	}
	next := metav1Later(deadline)
	d.NextAttemptTime = &next
	d.LastError = fmt.Sprintf("SubscriptionSink %q does not exist; waiting until %s for a sink of that name",
		d.Name, next.UTC().Format(time.RFC3339))
}

// recordAttempt writes into the delivery the outcome of an attempt that has just ended
// (it began at the time given), and decides what comes next.
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
	// The wait counts from the attempt's end, not its start: an attempt that ran into its
	// timeout would otherwise be retried at once, and a sink that hangs would get no
	// backoff until the interval outgrew the timeout.
	next := metav1Later(r.now().Add(policy.nextAttemptDelay(d.Attempts, sinks.RetryAfter(err))))
	d.NextAttemptTime = &next
}

func (r *SubscriptionReconciler) fail(sub *v1alpha1.OfficialAccountSubscription, d *v1alpha1.SinkDelivery, reason string) {
	d.State, d.NextAttemptTime, d.LastError = v1alpha1.DeliveryFailed, nil, truncate(reason)
	deliveriesTotal.WithLabelValues(sub.Namespace+"/"+d.Name, "failed").Inc()
	r.Recorder.Eventf(sub, nil, corev1.EventTypeWarning, v1alpha1.ReasonDeliveryFailed, "Deliver",
		"delivery to sink %s failed: %s", d.Name, d.LastError)
}

// laneFullRecheck is how long an event that found its sink's lane full waits at most
// before looking again, should the lane's own wake-up be lost with its term.
const laneFullRecheck = 30 * time.Second

// requeueAfter is the time until the soonest due attempt or retention deadline. Deliveries
// in the sinks' lanes are left out: their end queues the event again.
func (r *SubscriptionReconciler) requeueAfter(sub *v1alpha1.OfficialAccountSubscription, lanes handedOff) time.Duration {
	now := r.now()
	var soonest time.Time
	consider := func(t time.Time) {
		if soonest.IsZero() || t.Before(soonest) {
			soonest = t
		}
	}
	for _, d := range sub.Status.Sinks {
		if d.State == v1alpha1.DeliveryPending && d.NextAttemptTime != nil && !lanes.underWay[d.Name] {
			consider(d.NextAttemptTime.Time)
		}
	}
	if lanes.laneFull {
		consider(now.Add(laneFullRecheck))
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
	if r.Activity == nil {
		r.Activity = &SinkActivity{}
	}
	r.sinks = &sinksAsOf{reader: r.APIReader}
	r.lanes = newDeliveryLanes(ctx.Done(), ctx)
	for index, state := range map[string]v1alpha1.DeliveryState{pendingSinkIndex: v1alpha1.DeliveryPending, failedSinkIndex: v1alpha1.DeliveryFailed} {
		if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.OfficialAccountSubscription{}, index, sinksIn(state)); err != nil {
			return err
		}
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.OfficialAccountSubscription{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&v1alpha1.SubscriptionSink{}, handler.EnqueueRequestsFromMapFunc(r.subscriptionsWaitingFor)).
		WatchesRawSource(source.Channel(r.lanes.requeue, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Named("officialaccountsubscription").
		Complete(r)
}

// sinksIn indexes an event by the sinks whose delivery is in the state.
func sinksIn(state v1alpha1.DeliveryState) client.IndexerFunc {
	return func(obj client.Object) []string {
		var names []string
		for _, d := range obj.(*v1alpha1.OfficialAccountSubscription).Status.Sinks {
			if d.State == state {
				names = append(names, d.Name)
			}
		}
		return names
	}
}

// subscriptionsWaitingFor maps a sink to the subscriptions still waiting to be delivered
// to it.
func (r *SubscriptionReconciler) subscriptionsWaitingFor(ctx context.Context, sink client.Object) []reconcile.Request {
	return requestsFromIndex(ctx, r.Client, &v1alpha1.OfficialAccountSubscriptionList{}, sink, pendingSinkIndex)
}

// WaitForDeliveries waits, until the deadline at most, for the deliveries under way to end
// and keep their outcomes, then cancels those still running. Call it once the manager has
// stopped, before WriteUnwrittenOutcomes.
func (r *SubscriptionReconciler) WaitForDeliveries(deadline time.Time) {
	if r.lanes != nil {
		r.lanes.drain(deadline)
	}
}
