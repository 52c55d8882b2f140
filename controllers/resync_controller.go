package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/tencent"
)

// Bounds of one resync.
const (
	// accountScanTimeout bounds the listing of one account: 1,000,000 subscribers are 5,000
	// pages, 250 s at the scanner's 20 calls/s.
	accountScanTimeout = 30 * time.Minute
	// resyncRetryAfter is how soon a resync that failed is tried again (unless the
	// interval is shorter); one whose configuration is wrong waits for a change or this.
	resyncRetryAfter = 5 * time.Minute
	// restCallTimeout bounds each REST call.
	restCallTimeout = 10 * time.Second
	// eventCreateTimeout bounds each snapshot resource's create.
	eventCreateTimeout = 10 * time.Second
)

// ResyncReconciler lists each OfficialAccountResync's accounts' subscribers from Tencent's
// REST API every interval and stores each listing as a snapshot of Snapshot events, which
// the subscription reconciler delivers like callbacks.
type ResyncReconciler struct {
	client.Client
	APIReader client.Reader
	HTTP      *http.Client // nil: one with restCallTimeout
	Now       func() time.Time
	// Pace and Backoff override the scanner's defaults (tests make them short).
	Pace    time.Duration
	Backoff func(attempt int) time.Duration
}

// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=officialaccountresyncs,verbs=get;list;watch
// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=officialaccountresyncs/status,verbs=get;update;patch

func (r *ResyncReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile resyncs when due: at the interval, when the spec changed, or when the resync
// annotation has a new value.
func (r *ResyncReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var rs v1alpha1.OfficialAccountResync
	if err := r.Get(ctx, req.NamespacedName, &rs); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	now := r.now()
	if rs.Spec.Suspend {
		return reconcile.Result{}, r.writeStatus(ctx, &rs, func(st *v1alpha1.OfficialAccountResyncStatus) {
			st.NextResyncTime = nil
			setCondition(st, v1alpha1.ConditionReconciling, metav1.ConditionFalse, v1alpha1.ReasonSuspended, "resyncs are suspended", rs.Generation)
		})
	}
	if wait := resyncDueIn(&rs, now); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	if err := r.writeStatus(ctx, &rs, func(st *v1alpha1.OfficialAccountResyncStatus) {
		setCondition(st, v1alpha1.ConditionReconciling, metav1.ConditionTrue, v1alpha1.ReasonResyncing,
			fmt.Sprintf("listing the subscribers of %d account(s)", len(rs.Spec.OfficialAccounts)), rs.Generation)
	}); err != nil {
		return reconcile.Result{}, err
	}
	outcome := r.resync(ctx, &rs, now)
	if err := r.writeStatus(ctx, &rs, outcome.applyTo(&rs, now)); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: rs.Status.NextResyncTime.Sub(r.now())}, nil
}

// resyncDueIn is how long until the next resync, 0 when it is due now.
func resyncDueIn(rs *v1alpha1.OfficialAccountResync, now time.Time) time.Duration {
	st := rs.Status
	if st.ObservedGeneration != rs.Generation || st.NextResyncTime == nil || rs.Annotations[v1alpha1.AnnotationResyncNow] != st.LastHandledResync {
		return 0
	}
	return max(st.NextResyncTime.Sub(now), 0)
}

// resyncOutcome is what one resync of every account found.
type resyncOutcome struct {
	accounts []v1alpha1.AccountResync
	failed   int
	firstErr error
	refused  error // Tencent refused the credentials or the service: Stalled
	config   *configError
}

// resync lists every account and stores a snapshot of each; an account that fails keeps
// its last good listing in the status and gets its error.
func (r *ResyncReconciler) resync(ctx context.Context, rs *v1alpha1.OfficialAccountResync, now time.Time) resyncOutcome {
	var out resyncOutcome
	api, err := r.restClient(ctx, rs)
	if err != nil {
		var cfgErr *configError
		if !errors.As(err, &cfgErr) {
			cfgErr = &configError{reason: v1alpha1.ReasonResyncFailed, err: err}
		}
		out.config = cfgErr
		return out
	}
	scanner := &tencent.Scanner{Client: api, Pace: r.Pace, Backoff: r.Backoff}
	for _, account := range rs.Spec.OfficialAccounts {
		entry := previousAccount(rs, account)
		if out.refused != nil {
			// Every other account would be refused the same way: they keep their last listing.
			out.accounts = append(out.accounts, entry)
			continue
		}
		if err := r.resyncAccount(ctx, rs, scanner, &entry); err != nil {
			entry.LastError, entry.LastErrorTime = truncate(err.Error()), ptrTime(r.now())
			out.failed++
			if out.firstErr == nil {
				out.firstErr = fmt.Errorf("%s: %w", account, err)
			}
			var tencentErr *tencent.Error
			if errors.As(err, &tencentErr) && tencentErr.Refused() && out.refused == nil {
				out.refused = err
			}
		}
		out.accounts = append(out.accounts, entry)
	}
	return out
}

// resyncAccount lists one account and stores its snapshot, updating entry.
func (r *ResyncReconciler) resyncAccount(ctx context.Context, rs *v1alpha1.OfficialAccountResync, scanner *tencent.Scanner,
	entry *v1alpha1.AccountResync) error {
	ctx, cancel := context.WithTimeout(ctx, accountScanTimeout)
	defer cancel()
	taken := r.now() // before the first page: whatever changes after may or may not be listed
	scan, err := scanner.Subscribers(ctx, entry.OfficialAccount)
	if scan != nil {
		entry.Calls = int32(scan.Calls)
	}
	if err != nil {
		return err
	}
	names := make([]string, len(scan.Subscribers))
	for i, s := range scan.Subscribers {
		names[i] = s.Account
	}
	objs := snapshotEvents(rs.Namespace, rs.Spec.SDKAppID, entry.OfficialAccount, taken, names)
	for _, obj := range objs {
		createCtx, cancel := context.WithTimeout(ctx, eventCreateTimeout)
		err := r.Create(createCtx, obj)
		cancel()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("storing part %s of the snapshot: %w", obj.Annotations[v1alpha1.AnnotationPart], err)
		}
	}
	hash := subscribersHash(names)
	entry.Changed = entry.ContentHash != "" && entry.ContentHash != hash
	entry.ContentHash, entry.Subscribers, entry.Snapshot = hash, int32(len(names)), objs[0].Spec.Snapshot.ID
	entry.LastResyncTime, entry.LastError, entry.LastErrorTime = ptrTime(taken), "", nil
	return nil
}

// restClient is a client for the resync's app with the credentials from its Secrets.
func (r *ResyncReconciler) restClient(ctx context.Context, rs *v1alpha1.OfficialAccountResync) (*tencent.Client, error) {
	secrets := &sinkResolver{client: r.Client, apiReader: r.APIReader}
	identifier, _, err := secrets.secretValue(ctx, rs.Namespace, &rs.Spec.AdminIdentifierSecretRef)
	if err != nil {
		return nil, err
	}
	key, _, err := secrets.secretValue(ctx, rs.Namespace, &rs.Spec.SecretKeySecretRef)
	if err != nil {
		return nil, err
	}
	sdkAppID, err := strconv.ParseUint(rs.Spec.SDKAppID, 10, 64)
	if err != nil {
		return nil, &configError{reason: v1alpha1.ReasonInvalidConfig, err: fmt.Errorf("sdkAppID: %w", err)}
	}
	endpoint := rs.Spec.Endpoint
	if endpoint == "" {
		endpoint = "https://" + tencent.Regions[rs.Spec.Region]
	}
	httpClient := r.HTTP
	if httpClient == nil {
		httpClient = &http.Client{Timeout: restCallTimeout}
	}
	return &tencent.Client{Endpoint: endpoint, SDKAppID: sdkAppID, Identifier: identifier, SecretKey: key, HTTP: httpClient}, nil
}

// previousAccount is the account's entry of the last status, or a new one.
func previousAccount(rs *v1alpha1.OfficialAccountResync, account string) v1alpha1.AccountResync {
	for _, a := range rs.Status.Accounts {
		if a.OfficialAccount == account {
			return a
		}
	}
	return v1alpha1.AccountResync{OfficialAccount: account}
}

// applyTo is the status change the outcome makes. A resync that failed is tried again
// after resyncRetryAfter, or the interval if that is shorter.
func (o resyncOutcome) applyTo(rs *v1alpha1.OfficialAccountResync, started time.Time) func(*v1alpha1.OfficialAccountResyncStatus) {
	return func(st *v1alpha1.OfficialAccountResyncStatus) {
		gen := rs.Generation
		interval := resyncInterval(rs)
		next := started.Add(min(interval, resyncRetryAfter))
		st.ObservedGeneration, st.LastHandledResync = gen, rs.Annotations[v1alpha1.AnnotationResyncNow]
		setCondition(st, v1alpha1.ConditionReconciling, metav1.ConditionFalse, v1alpha1.ReasonResynced, "no resync under way", gen)
		switch {
		case o.config != nil:
			setStalled(st, o.config.reason, o.config.Error(), gen)
		case o.refused != nil:
			setStalled(st, v1alpha1.ReasonTencentRefused, truncate("Tencent refused the resync, check the secret key, "+
				"the admin account and that Official Accounts are enabled: "+o.refused.Error()), gen)
		case o.failed > 0:
			msg := fmt.Sprintf("%d of %d account(s) failed: %v", o.failed, len(rs.Spec.OfficialAccounts), o.firstErr)
			setCondition(st, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonResyncFailed, truncate(msg), gen)
			meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
		default:
			next = started.Add(interval)
			st.LastResyncTime = ptrTime(started)
			setCondition(st, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonResynced,
				fmt.Sprintf("stored a snapshot of each of %d account(s)", len(o.accounts)), gen)
			meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
		}
		if o.accounts != nil {
			st.Accounts = o.accounts
		}
		st.NextResyncTime = ptrTime(next)
	}
}

func resyncInterval(rs *v1alpha1.OfficialAccountResync) time.Duration {
	if rs.Spec.Interval != nil && rs.Spec.Interval.Duration > 0 {
		return rs.Spec.Interval.Duration
	}
	return 6 * time.Hour
}

// writeStatus applies change to the status and patches it, unless it changed nothing.
func (r *ResyncReconciler) writeStatus(ctx context.Context, rs *v1alpha1.OfficialAccountResync, change func(*v1alpha1.OfficialAccountResyncStatus)) error {
	original := rs.DeepCopy()
	change(&rs.Status)
	if equality.Semantic.DeepEqual(original.Status, rs.Status) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), statusWriteTimeout)
	defer cancel()
	return client.IgnoreNotFound(r.Status().Patch(ctx, rs, client.MergeFrom(original)))
}

func setCondition(st *v1alpha1.OfficialAccountResyncStatus, kind string, status metav1.ConditionStatus, reason, msg string, gen int64) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: kind, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
}

// setStalled says the resync cannot succeed until something outside the operator changes.
func setStalled(st *v1alpha1.OfficialAccountResyncStatus, reason, msg string, gen int64) {
	setCondition(st, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg, gen)
	setCondition(st, v1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg, gen)
}

func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}

// resyncWorkers resync this many OfficialAccountResyncs at once; each paces its own calls.
const resyncWorkers = 2

// SetupWithManager watches the resyncs' spec and annotations; the interval comes back by
// itself through RequeueAfter.
func (r *ResyncReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.OfficialAccountResync{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: resyncWorkers}).
		Named("officialaccountresync").
		Complete(r)
}
