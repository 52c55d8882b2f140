package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
)

// replayIndex indexes events by the names of the replays that labelled them, so that a
// replay counts its own events without going through every stored one.
const replayIndex = "metadata.replays"

// Replay timings: how often a running replay counts its progress, and how soon a replay
// whose sink is missing looks again.
const (
	replayProgressInterval = 2 * time.Second
	replaySinkRecheck      = 30 * time.Second
	// replayCacheGrace is how long after a replay started an event it labelled may be
	// missing from the cache before it is taken for deleted.
	replayCacheGrace = 30 * time.Second
)

// ReplayReconciler runs SubscriptionReplays. At a replay's first reconcile that is no dry
// run it selects the events its filter matches and freezes the selection by labelling them
// (the label's value is the replay's UID); the subscription reconciler then gives each a
// delivery to the replay's sink, and this reconciler counts how far they got. A dry run
// only counts.
type ReplayReconciler struct {
	client.Client
	// Now is the clock; tests leave it nil.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=subscriptionreplays,verbs=get;list;watch
// +kubebuilder:rbac:groups=officialaccount.chat-operators.dev,resources=subscriptionreplays/status,verbs=get;update;patch

func (r *ReplayReconciler) now() metav1.Time {
	if r.Now != nil {
		return delivery.StatusTime(r.Now())
	}
	return delivery.StatusTime(time.Now())
}

// Reconcile selects a replay's events (or counts them, for a dry run), then follows them.
// A completed replay's counts are final: its events may be deleted by retention since, and
// its sink too.
func (r *ReplayReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var replay v1alpha1.SubscriptionReplay
	if err := r.Get(ctx, req.NamespacedName, &replay); err != nil || !replay.DeletionTimestamp.IsZero() ||
		replay.Status.CompletionTime != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	st := replay.Status.DeepCopy()
	st.ObservedGeneration = replay.Generation
	sinkFound, err := r.sinkExists(ctx, &replay)
	if err != nil {
		return ctrl.Result{}, err
	}
	var result ctrl.Result
	switch {
	case !replay.Started():
		result, err = r.start(ctx, &replay, st, sinkFound)
	case selecting(st):
		result, err = r.finishSelection(ctx, &replay, st)
	default:
		result, err = r.follow(ctx, &replay, st)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if !sinkFound {
		setStalled(st, replay.Generation, v1alpha1.ReasonSinkNotFound,
			fmt.Sprintf("SubscriptionSink %q does not exist in this namespace", replay.Spec.SinkName))
		if result.RequeueAfter == 0 || result.RequeueAfter > replaySinkRecheck {
			result.RequeueAfter = replaySinkRecheck
		}
	} else if stalled := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionStalled); stalled != nil &&
		stalled.Reason == v1alpha1.ReasonSinkNotFound {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
	}
	return result, r.writeStatus(ctx, &replay, st)
}

// writeStatus stores the replay's status if it changed; replay then holds what was stored.
func (r *ReplayReconciler) writeStatus(ctx context.Context, replay *v1alpha1.SubscriptionReplay, st *v1alpha1.SubscriptionReplayStatus) error {
	if equality.Semantic.DeepEqual(&replay.Status, st) {
		return nil
	}
	replay.Status = *st.DeepCopy()
	writeCtx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancel()
	return r.Status().Update(writeCtx, replay)
}

func (r *ReplayReconciler) sinkExists(ctx context.Context, replay *v1alpha1.SubscriptionReplay) (bool, error) {
	var sink v1alpha1.SubscriptionSink
	err := r.Get(ctx, types.NamespacedName{Namespace: replay.Namespace, Name: replay.Spec.SinkName}, &sink)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// start counts the events the filter matches. Unless the replay is a dry run, goes over
// maxEvents or has no sink, it records the start (from then on the API server refuses
// changes to the spec) and freezes the selection by labelling the events.
func (r *ReplayReconciler) start(ctx context.Context, replay *v1alpha1.SubscriptionReplay,
	st *v1alpha1.SubscriptionReplayStatus, sinkFound bool) (ctrl.Result, error) {
	selected, err := r.selection(ctx, replay)
	if err != nil {
		return ctrl.Result{}, err
	}
	st.Matched = int32(len(selected))
	limit := replay.MaxEventsOrDefault()
	switch {
	case len(selected) > limit:
		setStalled(st, replay.Generation, v1alpha1.ReasonTooManyEvents,
			fmt.Sprintf("the filter matches %d events, more than maxEvents (%d); nothing is sent: narrow the filter or raise maxEvents",
				len(selected), limit))
		return ctrl.Result{}, nil
	case replay.Spec.DryRun:
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
		setReady(st, replay.Generation, metav1.ConditionTrue, v1alpha1.ReasonDryRun,
			fmt.Sprintf("dry run: the filter matches %d events; nothing is sent until dryRun is false", len(selected)))
		return ctrl.Result{}, nil
	case !sinkFound:
		return ctrl.Result{}, nil
	}
	started := r.now()
	st.StartTime = &started
	meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
	setRunning(st, replay.Generation, v1alpha1.ReasonSelecting, fmt.Sprintf("selecting %d events", st.Matched))
	if err := r.writeStatus(ctx, replay, st); err != nil {
		return ctrl.Result{}, err
	}
	return r.labelAll(ctx, replay, st, selected)
}

// finishSelection labels what a start cut short (the operator stopped, or a label could not
// be written): the events already labelled, and those the filter matches now.
func (r *ReplayReconciler) finishSelection(ctx context.Context, replay *v1alpha1.SubscriptionReplay,
	st *v1alpha1.SubscriptionReplayStatus) (ctrl.Result, error) {
	selected, err := r.selection(ctx, replay)
	if err != nil {
		return ctrl.Result{}, err
	}
	st.Matched = int32(len(selected))
	return r.labelAll(ctx, replay, st, selected)
}

// labelAll labels every selected event; the replay then follows their deliveries.
func (r *ReplayReconciler) labelAll(ctx context.Context, replay *v1alpha1.SubscriptionReplay,
	st *v1alpha1.SubscriptionReplayStatus, selected []v1alpha1.OfficialAccountSubscription) (ctrl.Result, error) {
	for i := range selected {
		if err := r.label(ctx, replay, &selected[i]); err != nil {
			return ctrl.Result{}, err
		}
	}
	st.Pending = st.Matched
	setRunning(st, replay.Generation, v1alpha1.ReasonReplaying, fmt.Sprintf("%d events selected; their deliveries start", st.Matched))
	return ctrl.Result{RequeueAfter: replayProgressInterval}, nil
}

// selection lists the stored events the replay selects: those it labelled already, and
// those its filter matches now.
func (r *ReplayReconciler) selection(ctx context.Context, replay *v1alpha1.SubscriptionReplay) ([]v1alpha1.OfficialAccountSubscription, error) {
	var events v1alpha1.OfficialAccountSubscriptionList
	if err := r.List(ctx, &events, client.InNamespace(replay.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing the events from the cache: %w", err)
	}
	label, uid := v1alpha1.ReplayLabel(replay.Name), string(replay.UID)
	var selected []v1alpha1.OfficialAccountSubscription
	for _, ev := range events.Items {
		if ev.DeletionTimestamp.IsZero() && (ev.Labels[label] == uid || delivery.ReplaySelects(replay, &ev)) {
			selected = append(selected, ev)
		}
	}
	return selected, nil
}

// label marks an event as selected by the replay, unless it is already.
func (r *ReplayReconciler) label(ctx context.Context, replay *v1alpha1.SubscriptionReplay, ev *v1alpha1.OfficialAccountSubscription) error {
	label, uid := v1alpha1.ReplayLabel(replay.Name), string(replay.UID)
	if ev.Labels[label] == uid {
		return nil
	}
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, label, uid))
	writeCtx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancel()
	target := &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ev.Namespace, Name: ev.Name}}
	if err := r.Patch(writeCtx, target, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("labelling event %s for the replay: %w", ev.Name, err)
	}
	return nil
}

// SetupWithManager indexes events by the replays that labelled them and watches replays'
// specs. A running replay looks at its events every replayProgressInterval instead of at
// each of their changes: its count is one list of its own events, however many change.
func (r *ReplayReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.OfficialAccountSubscription{}, replayIndex, func(obj client.Object) []string {
		var names []string
		for name := range delivery.LabelledReplays(obj.(*v1alpha1.OfficialAccountSubscription)) {
			names = append(names, name)
		}
		return names
	})
	if err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.SubscriptionReplay{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.SubscriptionSink{}, handler.EnqueueRequestsFromMapFunc(r.replaysOfSink),
			builder.WithPredicates(sinkCreatedOrDeleted)).
		Named("subscriptionreplay").
		Complete(r)
}

// sinkCreatedOrDeleted passes what makes a replay's sink appear or go.
var sinkCreatedOrDeleted = predicate.Funcs{
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// replaysOfSink are the replays that send to the sink: a replay waiting for its sink
// starts when it is created.
func (r *ReplayReconciler) replaysOfSink(ctx context.Context, sink client.Object) []reconcile.Request {
	var replays v1alpha1.SubscriptionReplayList
	if err := r.List(ctx, &replays, client.InNamespace(sink.GetNamespace())); err != nil {
		return nil
	}
	var requests []reconcile.Request
	for _, replay := range replays.Items {
		if replay.Spec.SinkName == sink.GetName() {
			requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&replay)})
		}
	}
	return requests
}
