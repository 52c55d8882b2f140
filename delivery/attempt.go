package delivery

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// Deliverer makes delivery attempts in the sinks' lanes and keeps their outcomes in the
// ledger.
type Deliverer struct {
	// Cache is the manager's cache, for reading a sink when its delivery's turn comes.
	Cache    client.Reader
	Resolver *Resolver
	Ledger   *Ledger
	Activity *SinkActivity
	Breakers *Breakers
	Limits   *RateLimits
	// CircuitClosed wakes the deliveries a sink's circuit held, once it closes.
	CircuitClosed func(sink types.NamespacedName)
	Recorder      events.EventRecorder
	// RecordDelivered records a Normal Event on each resource delivered to a sink. It is one
	// more API write per delivery; failures are recorded whatever its value.
	RecordDelivered bool
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

func (dl *Deliverer) now() time.Time {
	if dl.Now != nil {
		return dl.Now()
	}
	return time.Now()
}

// Job is the lane job that delivers event (a copy the job keeps) once to the sink d names,
// d being the delivery as the plan left it, logging with ctx's logger. The sink is read when the job's turn comes,
// not when it was queued: up to a lane's queue of deliveries may wait behind a hung one,
// and meanwhile the sink may have been changed, suspended or deleted.
func (dl *Deliverer) Job(ctx context.Context, event *v1alpha1.OfficialAccountSubscription, d v1alpha1.SinkDelivery) Job {
	key := types.NamespacedName{Namespace: event.Namespace, Name: d.TargetSink()}
	log := logf.FromContext(ctx)
	letter := deadLetterOf(&event.Status, d)
	return Job{
		Sink:  key.String(),
		Event: types.NamespacedName{Namespace: event.Namespace, Name: event.Name},
		Run: func(laneCtx context.Context) {
			ctx := sinks.WithReplay(sinks.WithDeadLetter(logf.IntoContext(laneCtx, log), letter), d.Replay)
			dl.attempt(ctx, event, d, key)
		},
		Drop: func() { dl.Ledger.Abandon(event, d.Name) },
	}
}

// attempt delivers the event to the sink once, unless the sink is suspended or gone by
// now, or its circuit holds the delivery, and keeps the outcome for the reconcile that
// writes it. A delivery that makes no attempt just ends: the reconcile its end queues sees
// the sink as it is.
func (dl *Deliverer) attempt(ctx context.Context, event *v1alpha1.OfficialAccountSubscription, d v1alpha1.SinkDelivery,
	key types.NamespacedName) {
	// Read only, as a built sink keeps it: the cache's copy, which the cache replaces but
	// never changes.
	var sink v1alpha1.SubscriptionSink
	if err := dl.Cache.Get(ctx, key, &sink, client.UnsafeDisableDeepCopy); err != nil || sink.Spec.Suspend || ctx.Err() != nil || !dl.replayLive(ctx, event, d) {
		dl.Ledger.Abandon(event, d.Name)
		return
	}
	admitted, probe := dl.Breakers.Admit(key.String(), sink.Spec.CircuitBreaker, dl.now())
	if !admitted {
		// The circuit opened while this delivery waited in the lane, or another is the
		// probe: no attempt. The reconcile this queues holds it, with its give-up deadline.
		dl.Ledger.Abandon(event, d.Name)
		return
	}
	err := dl.Limits.Wait(ctx, key.String(), sink.Spec.RateLimit)
	start := dl.now()
	if err == nil {
		err = dl.deliver(ctx, event, &sink)
	}
	if err != nil && ctx.Err() != nil {
		// Cancelled: the lease was lost, or an orderly stop ran out of time. That is no
		// attempt of the sink's; whoever leads next delivers it (at-least-once).
		dl.Ledger.Abandon(event, d.Name)
		if probe {
			dl.Breakers.ProbeAbandoned(key.String())
		}
		return
	}
	dl.recordAttempt(ctx, event, &d, &sink, start, err)
	dl.Ledger.Finish(event, d)
	dl.Activity.record(key.String(), start, err)
	dl.circuitChanged(&sink, dl.Breakers.Record(key.String(), sink.Spec.CircuitBreaker, probe, err, dl.now()))
	// A sink deleted while this delivery used it leaves no built sink behind (a pool, a
	// connection that would reconnect for ever): the sink reconciler forgets it when it
	// sees the delete, and this does when the delete came first.
	if err := dl.Cache.Get(ctx, key, &sink, client.UnsafeDisableDeepCopy); apierrors.IsNotFound(err) {
		dl.Resolver.Registry.Forget(key.String())
	}
}

// replayLive reports whether the replay a delivery is made for, if any, still exists: a
// replay deleted while its deliveries waited in the lane starts none of them.
func (dl *Deliverer) replayLive(ctx context.Context, event *v1alpha1.OfficialAccountSubscription, d v1alpha1.SinkDelivery) bool {
	if d.Replay == "" {
		return true
	}
	var replay v1alpha1.SubscriptionReplay
	err := dl.Cache.Get(ctx, types.NamespacedName{Namespace: event.Namespace, Name: d.Replay}, &replay, client.UnsafeDisableDeepCopy)
	return err == nil && replay.DeletionTimestamp.IsZero() && string(replay.UID) == event.Labels[v1alpha1.ReplayLabel(d.Replay)]
}

// deliver builds the sink, if it is not built yet, and makes the attempt.
func (dl *Deliverer) deliver(ctx context.Context, event *v1alpha1.OfficialAccountSubscription, sink *v1alpha1.SubscriptionSink) error {
	target, err := dl.resolve(ctx, sink)
	if err != nil {
		return err
	}
	start := dl.now()
	err = target.Deliver(ctx, event)
	deliveryDuration.WithLabelValues(SinkKey(sink)).Observe(dl.now().Sub(start).Seconds())
	return err
}

// resolveTimeout bounds building a sink: the Secrets it names may be read from the API
// server, and a pool or connection may be dialled.
const resolveTimeout = 10 * time.Second

func (dl *Deliverer) resolve(ctx context.Context, sink *v1alpha1.SubscriptionSink) (sinks.Sink, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	return dl.Resolver.Resolve(ctx, sink)
}

// recordAttempt writes into the delivery the outcome of an attempt that has just ended
// (it began at the time given), and decides what comes next.
func (dl *Deliverer) recordAttempt(ctx context.Context, sub *v1alpha1.OfficialAccountSubscription, d *v1alpha1.SinkDelivery,
	sink *v1alpha1.SubscriptionSink, at time.Time, err error) {
	attemptTime := StatusTime(at)
	d.Attempts++
	d.LastAttemptTime = &attemptTime
	if d.FirstAttemptTime == nil {
		d.FirstAttemptTime = &attemptTime
	}
	d.NextAttemptTime = nil
	sinkLabel := sub.Namespace + "/" + d.TargetSink()
	logf.FromContext(ctx).V(1).Info("delivery attempt", "sink", d.TargetSink(), "delivery", d.Name, "attempt", d.Attempts,
		"error", errString(err))
	if err == nil {
		d.State, d.DeliveredTime, d.LastError = v1alpha1.DeliveryDelivered, &attemptTime, ""
		deliveriesTotal.WithLabelValues(sinkLabel, "delivered").Inc()
		if dl.RecordDelivered {
			dl.Recorder.Eventf(sub, sink, corev1.EventTypeNormal, v1alpha1.ReasonDelivered, "Deliver",
				"delivered to sink %s on attempt %d", d.TargetSink(), d.Attempts)
		}
		return
	}
	policy := retryPolicyOf(sink.Spec.Retry)
	if sinks.IsPermanent(err) || policy.exhausted(d.Attempts, d.FirstAttemptTime.Time, at) {
		reason := v1alpha1.FailureRetriesExhausted
		if sinks.IsPermanent(err) {
			reason = v1alpha1.FailureRejected
		}
		giveUp(d, reason, err.Error())
		dl.GaveUp(sub, *d)
		return
	}
	deliveriesTotal.WithLabelValues(sinkLabel, "retry").Inc()
	d.LastError = truncate(err.Error())
	// The wait counts from the attempt's end, not its start: an attempt that ran into its
	// timeout would otherwise be retried at once, and a sink that hangs would get no
	// backoff until the interval outgrew the timeout.
	next := metav1Later(dl.now().Add(policy.nextAttemptDelay(d.Attempts, sinks.RetryAfter(err))))
	d.NextAttemptTime = &next
}

// GaveUp counts a delivery that failed for good and records a Warning Event on its event.
func (dl *Deliverer) GaveUp(sub *v1alpha1.OfficialAccountSubscription, d v1alpha1.SinkDelivery) {
	deliveriesTotal.WithLabelValues(sub.Namespace+"/"+d.TargetSink(), "failed").Inc()
	what := "delivery"
	if d.DeadLetterOf != "" {
		what = "dead letter (for sink " + d.DeadLetterOf + ")"
	}
	dl.Recorder.Eventf(sub, nil, corev1.EventTypeWarning, v1alpha1.ReasonDeliveryFailed, "Deliver",
		"%s to sink %s failed: %s", what, d.TargetSink(), d.LastError)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// circuitChanged tells of a circuit that opened or closed: an Event on the sink and, on
// closing, the held deliveries woken at the pace of the sink's lane.
func (dl *Deliverer) circuitChanged(sink *v1alpha1.SubscriptionSink, t Transition) {
	key := SinkKey(sink)
	switch t {
	case Opened:
		view := dl.Breakers.View(key)
		dl.Recorder.Eventf(sink, nil, corev1.EventTypeWarning, v1alpha1.ReasonCircuitOpened, "Deliver",
			"%d delivery attempts in a row failed (the last: %s); deliveries are held, and one probes the sink at %s",
			breakerPolicyOf(sink.Spec.CircuitBreaker).threshold, view.LastError, view.NextProbe.UTC().Format(time.RFC3339))
	case Closed:
		dl.Recorder.Eventf(sink, nil, corev1.EventTypeNormal, v1alpha1.ReasonCircuitClosed, "Deliver",
			"the sink answered a probe; its held deliveries resume")
		if dl.CircuitClosed != nil {
			dl.CircuitClosed(types.NamespacedName{Namespace: sink.Namespace, Name: sink.Name})
		}
	}
}
