package resync

import (
	"context"
	"fmt"
	"maps"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// storedParts reads the parts of plan that exist, with their subscribers.
func (r *run) storedParts(ctx context.Context, plan *v1alpha1.SnapshotInProgress) (map[int32][]string, error) {
	stored := map[int32][]string{}
	for part := int32(1); part <= plan.Parts; part++ {
		var obj v1alpha1.OfficialAccountSubscription
		getCtx, cancel := context.WithTimeout(ctx, apiTimeout)
		err := r.Get(getCtx, client.ObjectKey{Namespace: r.rs.Namespace, Name: partName(plan, part)}, &obj)
		cancel()
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading part %d of snapshot %s: %w", part, plan.Snapshot, err)
		default:
			stored[part] = obj.Spec.Subscribers
		}
	}
	return stored, nil
}

// admitParts refuses to store n more parts while the snapshot parts not yet delivered
// would pass their budget. Snapshots have a budget of their own, apart from the webhook's
// --max-pending-events, so that a few large accounts never push real callbacks, which
// Tencent does not send again, into 503.
func (r *run) admitParts(ctx context.Context, n int) error {
	limit := r.MaxPendingSnapshotParts
	if limit <= 0 {
		return nil
	}
	var list v1alpha1.OfficialAccountSubscriptionList
	if err := r.List(ctx, &list, client.InNamespace(r.rs.Namespace), client.UnsafeDisableDeepCopy,
		client.MatchingLabels{v1alpha1.LabelAction: string(v1alpha1.ActionSnapshot)}); err != nil {
		return fmt.Errorf("counting the snapshot parts not yet delivered: %w", err)
	}
	pending := 0
	for i := range list.Items {
		if list.Items[i].Status.CompletionTime == nil {
			pending++
		}
	}
	if pending+n > limit {
		return fmt.Errorf("%d snapshot parts are not yet delivered and this snapshot needs %d more, past --max-pending-snapshot-parts %d: "+
			"retried once the sinks catch up", pending, n, limit)
	}
	return nil
}

// createParts stores the parts, in order. One that exists already was stored by this
// snapshot's earlier try.
func (r *run) createParts(ctx context.Context, account string, plan *v1alpha1.SnapshotInProgress, parts map[int32][]string, total int) error {
	for _, part := range slices.Sorted(maps.Keys(parts)) {
		obj := snapshotPart(r.rs.Namespace, r.rs.Spec.SDKAppID, account, plan, part, parts[part], total)
		createCtx, cancel := context.WithTimeout(ctx, apiTimeout)
		err := r.Create(createCtx, obj)
		cancel()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("storing part %d/%d of the snapshot: %w", part, plan.Parts, err)
		}
	}
	return nil
}

// wasDestroyed tells whether an account Tencent no longer knows was destroyed: its
// AccountDestroyed event was recorded (recordDestroyed), or an earlier resync found so.
func wasDestroyed(entry *v1alpha1.AccountResync) bool {
	return entry.State == v1alpha1.AccountDestroyed
}
