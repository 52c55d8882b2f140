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
	Recorder events.EventRecorder
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
	key := types.NamespacedName{Namespace: event.Namespace, Name: d.Name}
	log := logf.FromContext(ctx)
	return Job{
		Sink:  key.String(),
		Event: types.NamespacedName{Namespace: event.Namespace, Name: event.Name},
		Run:   func(laneCtx context.Context) { dl.attempt(logf.IntoContext(laneCtx, log), event, d, key) },
		Drop:  func() { dl.Ledger.Abandon(event, d.Name) },
	}
}

// attempt delivers the event to the sink once, unless the sink is suspended or gone by
// now, and keeps the outcome for the reconcile that writes it. A delivery that makes no
// attempt just ends: the reconcile its end queues sees the sink as it is.
func (dl *Deliverer) attempt(ctx context.Context, event *v1alpha1.OfficialAccountSubscription, d v1alpha1.SinkDelivery,
	key types.NamespacedName) {
	var sink v1alpha1.SubscriptionSink
	if err := dl.Cache.Get(ctx, key, &sink); err != nil || sink.Spec.Suspend || ctx.Err() != nil {
		dl.Ledger.Abandon(event, d.Name)
		return
	}
	target, err := dl.resolve(ctx, &sink)
	start := dl.now()
	if err == nil {
		err = target.Deliver(ctx, event)
		deliveryDuration.WithLabelValues(key.String()).Observe(dl.now().Sub(start).Seconds())
	}
	if err != nil && ctx.Err() != nil {
		// Cancelled: the lease was lost, or an orderly stop ran out of time. That is no
		// attempt of the sink's; whoever leads next delivers it (at-least-once).
		dl.Ledger.Abandon(event, d.Name)
		return
	}
	dl.recordAttempt(ctx, event, &d, &sink, start, err)
	dl.Ledger.Finish(event, d)
	dl.Activity.record(key.String(), start, err)
	// A sink deleted while this delivery used it leaves no built sink behind (a pool, a
	// connection that would reconnect for ever): the sink reconciler forgets it when it
	// sees the delete, and this does when the delete came first.
	if err := dl.Cache.Get(ctx, key, &sink); apierrors.IsNotFound(err) {
		dl.Resolver.Registry.Forget(key.String())
	}
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
	sinkLabel := sub.Namespace + "/" + d.Name
	logf.FromContext(ctx).V(1).Info("delivery attempt", "sink", d.Name, "attempt", d.Attempts, "error", errString(err))
	if err == nil {
		d.State, d.DeliveredTime, d.LastError = v1alpha1.DeliveryDelivered, &attemptTime, ""
		deliveriesTotal.WithLabelValues(sinkLabel, "delivered").Inc()
		if dl.RecordDelivered {
			dl.Recorder.Eventf(sub, sink, corev1.EventTypeNormal, v1alpha1.ReasonDelivered, "Deliver",
				"delivered to sink %s on attempt %d", d.Name, d.Attempts)
		}
		return
	}
	policy := retryPolicyOf(sink.Spec.Retry)
	if sinks.IsPermanent(err) || policy.exhausted(d.Attempts, d.FirstAttemptTime.Time, at) {
		giveUp(d, err.Error())
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
	deliveriesTotal.WithLabelValues(sub.Namespace+"/"+d.Name, "failed").Inc()
	dl.Recorder.Eventf(sub, nil, corev1.EventTypeWarning, v1alpha1.ReasonDeliveryFailed, "Deliver",
		"delivery to sink %s failed: %s", d.Name, d.LastError)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
