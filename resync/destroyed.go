package resync

import (
	"context"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// A destroyed account is recorded in the resync's status as soon as its AccountDestroyed
// event is stored, not when the next resync meets Tencent's 130004: the event is deleted
// an hour after its delivery (--delivered-retention), long before the next resync at the
// default interval of 6 h, and the record must outlive it. The resync watches the
// AccountDestroyed events; an account whose event is newer than its last snapshot is
// marked Destroyed and resynced at once, which confirms it with Tencent. From then on a
// 130004 for it is its destruction, not a failure.

// isAccountDestroyed selects the AccountDestroyed events as they are stored.
var isAccountDestroyed = predicate.Funcs{
	CreateFunc:  func(e event.CreateEvent) bool { return destroyedEvent(e.Object) },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

func destroyedEvent(o client.Object) bool {
	return o.GetLabels()[v1alpha1.LabelAction] == string(v1alpha1.ActionAccountDestroyed)
}

// resyncsOfDestroyed maps an AccountDestroyed event to the resyncs of its app that name
// its account.
func (r *Reconciler) resyncsOfDestroyed(ctx context.Context, o client.Object) []reconcile.Request {
	sub, ok := o.(*v1alpha1.OfficialAccountSubscription)
	if !ok {
		return nil
	}
	var list v1alpha1.OfficialAccountResyncList
	if err := r.List(ctx, &list, client.InNamespace(sub.Namespace)); err != nil {
		logf.FromContext(ctx).Error(err, "listing the resyncs of a destroyed account", "event", sub.Name)
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		rs := &list.Items[i]
		if rs.Spec.SDKAppID == sub.Spec.SDKAppID && slices.Contains(rs.Spec.OfficialAccounts, sub.Spec.OfficialAccount) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(rs)})
		}
	}
	return reqs
}

// recordDestroyed marks Destroyed, and due now, each account of the resync whose
// AccountDestroyed event is stored and newer than its last snapshot (an account made
// anew and resynced since keeps its state), and writes the status if it marked any.
func (r *Reconciler) recordDestroyed(ctx context.Context, rs *v1alpha1.OfficialAccountResync) error {
	var list v1alpha1.OfficialAccountSubscriptionList
	if err := r.List(ctx, &list, client.InNamespace(rs.Namespace), client.UnsafeDisableDeepCopy, client.MatchingLabels{
		v1alpha1.LabelSDKAppID: rs.Spec.SDKAppID,
		v1alpha1.LabelAction:   string(v1alpha1.ActionAccountDestroyed),
	}); err != nil {
		return err
	}
	destroyedAt := map[string]int64{} // the newest destruction of each account
	for i := range list.Items {
		spec := &list.Items[i].Spec
		destroyedAt[spec.OfficialAccount] = max(destroyedAt[spec.OfficialAccount], spec.EventTime)
	}
	accounts := accountsInSpecOrder(rs)
	marked := false
	for i := range accounts {
		entry := &accounts[i]
		at, ok := destroyedAt[entry.OfficialAccount]
		if !ok || entry.State == v1alpha1.AccountDestroyed || (entry.LastResyncTime != nil && entry.LastResyncTime.UnixMilli() >= at) {
			continue
		}
		markDestroyed(entry)
		marked = true
	}
	if !marked {
		return nil
	}
	return r.writeStatus(ctx, rs, func(st *v1alpha1.OfficialAccountResyncStatus) { st.Accounts = copyAccounts(accounts) })
}
