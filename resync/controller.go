// Package resync lists Official Accounts' subscribers from Tencent's REST API and stores
// each listing as a snapshot of Snapshot events, which the subscription reconciler
// delivers like callbacks: a callback Tencent never delivered is still reflected
// downstream within an interval.
package resync

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/credentials"
	"github.com/chat-operators/officialaccount-operator/tencent"
)

// Bounds of one resync.
const (
	// accountScanTimeout bounds the listing of one account: 1,000,000 subscribers are two
	// passes of 5,000 pages, 500 s at 20 calls/s.
	accountScanTimeout = 30 * time.Minute
	// restCallTimeout bounds each REST call.
	restCallTimeout = 10 * time.Second
	// apiTimeout bounds each request to the API server.
	apiTimeout = 10 * time.Second
	// DefaultFailureBackoff is the first wait after an account's failure; it doubles with
	// each failure in a row, up to 5 minutes and never beyond the interval.
	DefaultFailureBackoff = 30 * time.Second
	// DefaultMaxPendingSnapshotParts bounds the snapshot parts stored and not yet
	// delivered: 4,000 parts are 2,000,000 subscribers, about 70 MiB of etcd.
	DefaultMaxPendingSnapshotParts = 4000
)

// Reconciler resyncs each OfficialAccountResync's accounts, each on its own schedule.
type Reconciler struct {
	client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	HTTP      *http.Client // nil: one with restCallTimeout that follows no redirects
	Now       func() time.Time
	// AllowedEndpoints are URL prefixes besides Tencent's REST domains that the admin
	// credentials may be sent to (--tencent-rest-endpoints).
	AllowedEndpoints []string
	// FailureBackoff is the first wait after an account fails (DefaultFailureBackoff).
	FailureBackoff time.Duration
	// MaxPendingSnapshotParts bounds the snapshot parts not yet delivered; 0: no bound.
	MaxPendingSnapshotParts int
	// Pace is the least time between two REST calls of one app (tencent.DefaultPace), and
	// PageBackoff the scanner's wait before a page's next attempt; tests shorten them.
	Pace        time.Duration
	PageBackoff func(attempt int) time.Duration

	paces appPaces

	// metricsMu orders the reconciles' exports with the end of the term: once termOver, a
	// reconcile still finishing exports nothing, so that a replica that lost the lease
	// keeps no series.
	metricsMu sync.Mutex
	termOver  bool
}

// exportMetrics exports the resync's series from its status, or forgets them while it is
// suspended; nothing once the term is over.
func (r *Reconciler) exportMetrics(rs *v1alpha1.OfficialAccountResync) {
	r.metricsMu.Lock()
	defer r.metricsMu.Unlock()
	switch {
	case r.termOver:
	case rs.Spec.Suspend: // not resynced, so never overdue
		forgetMetrics(rs.Namespace, rs.Name)
	default:
		exportStatus(rs, interval(rs))
	}
}

// endTerm drops every resync's series: the next leader exports them. It runs when the
// term's manager stops.
func (r *Reconciler) endTerm() {
	r.metricsMu.Lock()
	defer r.metricsMu.Unlock()
	r.termOver = true
	resetMetrics()
}

// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=officialaccountresyncs,verbs=get;list;watch
// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=officialaccountresyncs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile resyncs the accounts that are due, and comes back when the next one is.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var rs v1alpha1.OfficialAccountResync
	if err := r.getResync(ctx, req.NamespacedName, &rs); err != nil {
		if client.IgnoreNotFound(err) == nil {
			forgetMetrics(req.Namespace, req.Name)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if err := r.recordDestroyed(ctx, &rs); err != nil {
		return reconcile.Result{}, fmt.Errorf("recording the destroyed accounts: %w", err)
	}
	if rs.Spec.Suspend {
		r.exportMetrics(&rs)
		return reconcile.Result{}, r.writeStatus(ctx, &rs, func(st *v1alpha1.OfficialAccountResyncStatus) {
			st.NextResyncTime = nil
			setCondition(st, v1alpha1.ConditionReconciling, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "resyncs are suspended", rs.Generation)
		})
	}
	secretsVersion := r.secretsVersion(ctx, &rs)
	due := dueAccounts(&rs, r.now(), secretsVersion)
	if len(due) == 0 {
		// A new leader's first reconcile of a resync, or one woken by a Secret, exports
		// what the status says.
		r.exportMetrics(&rs)
		return reconcile.Result{RequeueAfter: requeueAfter(&rs.Status, r.now())}, nil
	}
	if err := r.writeStatus(ctx, &rs, func(st *v1alpha1.OfficialAccountResyncStatus) {
		setCondition(st, v1alpha1.ConditionReconciling, metav1.ConditionTrue, v1alpha1.ReasonResyncing,
			fmt.Sprintf("listing the subscribers of %d account(s)", len(due)), rs.Generation)
	}); err != nil {
		return reconcile.Result{}, err
	}
	run := &run{Reconciler: r, rs: &rs, accounts: accountsInSpecOrder(&rs)}
	stalled := run.resync(ctx, due)
	err := r.writeStatus(ctx, &rs, func(st *v1alpha1.OfficialAccountResyncStatus) {
		generation, handled := st.ObservedGeneration, st.LastHandledResync
		st.Accounts, st.SecretsVersion = copyAccounts(run.accounts), secretsVersion
		summarize(st, &rs, stalled)
		if run.interrupted { // what the spec or the annotation asked for is not all done: the next run does it
			st.ObservedGeneration, st.LastHandledResync = generation, handled
		}
	})
	r.exportMetrics(&rs)
	if err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: requeueAfter(&rs.Status, r.now())}, nil
}

// getResync reads the resync past the cache. A run calls Tencent for every account it
// finds due, and a cache that has not yet seen the last run's status (a Secret's event
// can bring the resync back at once) would have it list them all again. Resyncs reconcile
// a few times an interval, so the read costs the API server little.
func (r *Reconciler) getResync(ctx context.Context, key client.ObjectKey, rs *v1alpha1.OfficialAccountResync) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	return r.uncached().Get(ctx, key, rs)
}

// uncached reads from the API server itself, where the reconciler was given a reader that
// does.
func (r *Reconciler) uncached() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// secretsVersion is the resourceVersions of the Secrets the resync names, as the cache
// holds them ("-" for one it does not hold): it changes when a Secret gets the label, a
// new key, or is created.
func (r *Reconciler) secretsVersion(ctx context.Context, rs *v1alpha1.OfficialAccountResync) string {
	version := ""
	for _, name := range secretNames(rs) {
		var secret corev1.Secret
		v := "-"
		if err := r.Get(ctx, client.ObjectKey{Namespace: rs.Namespace, Name: name}, &secret); err == nil {
			v = secret.ResourceVersion
		}
		version += name + "=" + v + ";"
	}
	return version
}

func secretNames(rs *v1alpha1.OfficialAccountResync) []string {
	a, b := rs.Spec.AdminIdentifierSecretRef.Name, rs.Spec.SecretKeySecretRef.Name
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}

// restClient is a client for the resync's app with the credentials from its Secrets, or a
// stall when the endpoint is not allowed or the configuration is wrong.
func (r *Reconciler) restClient(ctx context.Context, rs *v1alpha1.OfficialAccountResync) (*tencent.Client, *stall, error) {
	endpoint := rs.Spec.Endpoint
	if endpoint == "" {
		endpoint = "https://" + tencent.Regions[rs.Spec.Region]
	}
	if err := tencent.CheckEndpoint(endpoint, r.AllowedEndpoints); err != nil {
		return nil, &stall{reason: v1alpha1.ReasonEndpointNotAllowed, message: truncate(err.Error())}, nil
	}
	sdkAppID, err := strconv.ParseUint(rs.Spec.SDKAppID, 10, 64)
	if err != nil {
		return nil, &stall{reason: v1alpha1.ReasonInvalidConfig, message: fmt.Sprintf("sdkAppID: %v", err)}, nil
	}
	secrets := credentials.Reader{Cache: r.Client, API: r.APIReader}
	identifier, key := "", ""
	for _, read := range []struct {
		ref *corev1.SecretKeySelector
		out *string
	}{{&rs.Spec.AdminIdentifierSecretRef, &identifier}, {&rs.Spec.SecretKeySecretRef, &key}} {
		readCtx, cancel := context.WithTimeout(ctx, apiTimeout)
		value, _, err := secrets.Value(readCtx, rs.Namespace, read.ref)
		cancel()
		var cfgErr *credentials.Error
		if errors.As(err, &cfgErr) {
			return nil, &stall{reason: cfgErr.Reason, message: truncate(cfgErr.Error())}, nil
		}
		if err != nil {
			return nil, nil, err
		}
		*read.out = value
	}
	httpClient := r.HTTP
	if httpClient == nil {
		httpClient = &http.Client{Timeout: restCallTimeout, CheckRedirect: tencent.NoRedirects}
	}
	return &tencent.Client{Endpoint: endpoint, SDKAppID: sdkAppID, Identifier: identifier, SecretKey: key, HTTP: httpClient,
		Observe: observeCall}, nil, nil
}

// writeStatus applies change to the status and patches it, unless it changed nothing.
func (r *Reconciler) writeStatus(ctx context.Context, rs *v1alpha1.OfficialAccountResync, change func(*v1alpha1.OfficialAccountResyncStatus)) error {
	original := rs.DeepCopy()
	change(&rs.Status)
	if equality.Semantic.DeepEqual(original.Status, rs.Status) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
	defer cancel()
	return client.IgnoreNotFound(r.Status().Patch(ctx, rs, client.MergeFrom(original)))
}

// Workers resync this many OfficialAccountResyncs at once; calls of one app share its pace.
const Workers = 2

// secretIndex indexes resyncs by the Secrets they name.
const secretIndex = "spec.secretNames"

// SetupWithManager watches the resyncs' spec and annotations, the Secrets they name, so
// that a resync stalled on its credentials runs as soon as they are fixed, and the
// AccountDestroyed events, so that a destruction is recorded while its event exists; the
// accounts' schedules come back by themselves through RequeueAfter.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.OfficialAccountResync{}, secretIndex, func(o client.Object) []string {
		return secretNames(o.(*v1alpha1.OfficialAccountResync))
	}); err != nil {
		return err
	}
	// The series are the leader's: a term starts without any, and drops them when its
	// manager stops (the lease lost, or the process ending), so that a replica that no
	// longer leads exports none, not even of a resync deleted since.
	resetMetrics()
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		r.endTerm()
		return nil
	})); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.OfficialAccountResync{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.resyncsNaming)).
		Watches(&v1alpha1.OfficialAccountSubscription{}, handler.EnqueueRequestsFromMapFunc(r.resyncsOfDestroyed),
			builder.WithPredicates(isAccountDestroyed)).
		WithOptions(controller.Options{MaxConcurrentReconciles: Workers}).
		Named("officialaccountresync").
		Complete(r)
}

// resyncsNaming maps a Secret to the resyncs that name it.
func (r *Reconciler) resyncsNaming(ctx context.Context, secret client.Object) []reconcile.Request {
	var list v1alpha1.OfficialAccountResyncList
	if err := r.List(ctx, &list, client.InNamespace(secret.GetNamespace()), client.MatchingFields{secretIndex: secret.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "listing the resyncs that name a Secret", "secret", secret.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}
