package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
	"github.com/chat-operators/officialaccount-operator/internal/credentials"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// sinkSecretIndex indexes sinks by the Secrets they name.
const sinkSecretIndex = "spec.secretNames"

const (
	// sinkStatusInterval is how often a sink's backlog is counted and, if it changed,
	// written: at most one status write per sink this often, however many events flow.
	sinkStatusInterval = 5 * time.Second
	// sinkRecheckInterval is how often a destination whose check failed is checked again.
	sinkRecheckInterval = 30 * time.Second
	// sinkCheckTimeout bounds one check of a destination.
	sinkCheckTimeout = 10 * time.Second
	// sinkWorkers reconcile sinks in parallel, so that one destination slow to build or
	// check (a database that does not answer) does not hold up the others' status.
	sinkWorkers = 4
)

// SinkReconciler reports in each SubscriptionSink's status whether it can be delivered to
// and how its deliveries are doing, and releases a deleted sink's connections.
type SinkReconciler struct {
	client.Client
	// APIReader reads past the cache (see sinkResolver).
	APIReader client.Reader
	Sinks     *sinks.Registry
	// Activity is the deliveries' record of their last success and error, shared with the
	// subscription reconciler.
	Activity *delivery.SinkActivity
	// Breakers are the sinks' circuit breakers, shared with the subscription reconciler.
	Breakers *delivery.Breakers

	// backlogs are the sinks' backlogs, kept by the events' informer; backlogsSynced
	// reports whether they include every cached event yet.
	backlogs       *sinkBacklogs
	backlogsSynced func() bool

	// checks remembers the last check of each built sink, so that the destination is
	// checked when its configuration changes, or again while it fails, not every interval.
	checks sync.Map // namespace/name -> checkResult
}

type checkResult struct {
	checked sinks.Sink
	err     error
	at      time.Time
}

// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=subscriptionsinks,verbs=get;list;watch
// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=subscriptionsinks/status,verbs=get;update;patch

func (r *SinkReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var sink v1alpha1.SubscriptionSink
	if err := r.Get(ctx, req.NamespacedName, &sink); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.String())
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !r.backlogsSynced() {
		return ctrl.Result{RequeueAfter: time.Second}, nil // a count short of events is no count
	}
	original := sink.DeepCopy()
	ready, err := r.readiness(ctx, &sink)
	if err != nil {
		return ctrl.Result{}, err
	}
	backlog := r.backlogs.Of(req.NamespacedName)
	key := delivery.SinkKey(&sink)
	applySinkStatus(&sink, backlog, r.Activity.Of(key), r.Breakers.View(key), ready)
	exportBacklog(key, backlog, time.Now())

	if !equality.Semantic.DeepEqual(original.Status, sink.Status) {
		ctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
		defer cancel()
		if err := r.Status().Patch(ctx, &sink, client.MergeFrom(original)); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("writing status: %w", err))
		}
	}
	return ctrl.Result{RequeueAfter: sinkStatusInterval}, nil
}

// readiness says whether the sink's configuration is valid, its Secrets exist, and its
// destination passed its check.
func (r *SinkReconciler) readiness(ctx context.Context, sink *v1alpha1.SubscriptionSink) (metav1.Condition, error) {
	ready := metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonValid,
		Message: "configuration is valid, its Secrets exist and the destination answers"}
	target, err := (&delivery.Resolver{Cache: r.Client, APIReader: r.APIReader, Registry: r.Sinks}).Resolve(ctx, sink)
	var cfgErr *credentials.Error
	switch {
	case errors.As(err, &cfgErr):
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, cfgErr.Reason, cfgErr.Error()
		return ready, nil
	case err != nil:
		return ready, err
	}
	if checkErr := r.check(ctx, delivery.SinkKey(sink), target); checkErr != nil {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ReasonCheckFailed, checkErr.Error()
		return ready, nil
	}
	if ref := sink.Spec.DeadLetterSinkRef; ref != nil {
		var dls v1alpha1.SubscriptionSink
		err := r.Get(ctx, types.NamespacedName{Namespace: sink.Namespace, Name: ref.Name}, &dls)
		switch {
		case apierrors.IsNotFound(err):
			ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonDeadLetterSinkNotFound
			ready.Message = fmt.Sprintf("the dead-letter sink %q does not exist: deliveries go on, and a failed one waits "+
				"--sink-not-found-grace for it, then stays Failed", ref.Name)
		case err != nil:
			return ready, fmt.Errorf("reading the dead-letter sink %q from the cache: %w", ref.Name, err)
		}
	}
	return ready, nil
}

// check runs the destination's check when the sink was built anew, or again
// sinkRecheckInterval after a failed one, and otherwise returns the last result.
func (r *SinkReconciler) check(ctx context.Context, key string, target sinks.Sink) error {
	checker, ok := target.(sinks.Checker)
	if !ok {
		return nil
	}
	if last, ok := r.checks.Load(key); ok {
		last := last.(checkResult)
		if last.checked == target && (last.err == nil || time.Since(last.at) < sinkRecheckInterval) {
			return last.err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, sinkCheckTimeout)
	defer cancel()
	err := checker.Check(ctx)
	r.checks.Store(key, checkResult{checked: target, err: err, at: time.Now()})
	return err
}

// forget releases what the operator kept of a deleted sink.
func (r *SinkReconciler) forget(key string) {
	r.Sinks.Forget(key)
	r.Activity.Forget(key)
	r.checks.Delete(key)
	forgetBacklog(key)
}

// SetupWithManager watches sinks and the Secrets they name; each sink's status is also
// refreshed every sinkStatusInterval.
func (r *SinkReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Activity == nil {
		r.Activity = &delivery.SinkActivity{}
	}
	if r.Breakers == nil {
		r.Breakers = &delivery.Breakers{}
	}
	err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.SubscriptionSink{}, sinkSecretIndex,
		func(obj client.Object) []string { return delivery.SecretNames(obj.(*v1alpha1.SubscriptionSink)) })
	if err != nil {
		return err
	}
	events, err := mgr.GetCache().GetInformer(ctx, &v1alpha1.OfficialAccountSubscription{})
	if err != nil {
		return fmt.Errorf("the informer of events: %w", err)
	}
	r.backlogs = newSinkBacklogs()
	registration, err := events.AddEventHandler(r.backlogs)
	if err != nil {
		return fmt.Errorf("counting the sinks' backlogs: %w", err)
	}
	r.backlogsSynced = registration.HasSynced
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.SubscriptionSink{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.sinksNaming)).
		WithOptions(controller.Options{MaxConcurrentReconciles: sinkWorkers}).
		Named("subscriptionsink").
		Complete(r)
}

// sinksNaming maps a Secret to the sinks that name it.
func (r *SinkReconciler) sinksNaming(ctx context.Context, secret client.Object) []reconcile.Request {
	return requestsFromIndex(ctx, r.Client, &v1alpha1.SubscriptionSinkList{}, secret, sinkSecretIndex)
}
