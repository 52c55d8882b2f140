package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// sinkSecretIndex indexes sinks by the Secrets they name.
const sinkSecretIndex = "spec.secretNames"

// sinkRecheckInterval is how often a sink whose check failed is checked again.
const sinkRecheckInterval = 30 * time.Second

// SinkReconciler reports in each SubscriptionSink's Ready condition whether it can be
// delivered to, and releases a deleted sink's connections.
type SinkReconciler struct {
	client.Client
	// APIReader reads past the cache (see sinkResolver).
	APIReader client.Reader
	Sinks     *sinks.Registry
}

// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=subscriptionsinks,verbs=get;list;watch
// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=subscriptionsinks/status,verbs=get;update;patch

func (r *SinkReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var sink v1alpha1.SubscriptionSink
	if err := r.Get(ctx, req.NamespacedName, &sink); err != nil {
		if apierrors.IsNotFound(err) {
			r.Sinks.Forget(req.String())
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patch := client.MergeFrom(sink.DeepCopy())
	ready := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: sink.Generation,
		Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonValid, Message: "configuration is valid and its Secrets exist"}
	target, resolveErr := (&sinkResolver{client: r.Client, apiReader: r.APIReader, registry: r.Sinks}).resolve(ctx, &sink)
	var cfgErr *configError
	var result ctrl.Result
	switch {
	case errors.As(resolveErr, &cfgErr):
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, cfgErr.reason, cfgErr.Error()
	case resolveErr != nil:
		return ctrl.Result{}, resolveErr
	default:
		if checker, ok := target.(sinks.Checker); ok {
			if err := checker.Check(ctx); err != nil {
				ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ReasonCheckFailed, err.Error()
				// A destination that is down may come back; look again.
				result.RequeueAfter = sinkRecheckInterval
			}
		}
	}
	sink.Status.ObservedGeneration = sink.Generation
	meta.SetStatusCondition(&sink.Status.Conditions, ready)
	if err := r.Status().Patch(ctx, &sink, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("writing status: %w", err))
	}
	return result, nil
}

// SetupWithManager watches sinks and the Secrets they name.
func (r *SinkReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.SubscriptionSink{}, sinkSecretIndex,
		func(obj client.Object) []string { return secretNames(obj.(*v1alpha1.SubscriptionSink)) })
	if err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.SubscriptionSink{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.sinksNaming)).
		Named("subscriptionsink").
		Complete(r)
}

// sinksNaming maps a Secret to the sinks that name it.
func (r *SinkReconciler) sinksNaming(ctx context.Context, secret client.Object) []reconcile.Request {
	return requestsFromIndex(ctx, r.Client, &v1alpha1.SubscriptionSinkList{}, secret, sinkSecretIndex)
}
