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

// storedParts reads the parts of plan that exist, with their subscribers: every copy that
// a try stored, whatever its name, read past the cache so that a part just created is
// not missed. A part delivered and deleted since counts as not stored.
func (r *run) storedParts(ctx context.Context, plan *v1alpha1.SnapshotInProgress, account string) (map[int32][]string, error) {
	reader := r.uncached()
	stored := map[int32][]string{}
	opts := []client.ListOption{client.InNamespace(r.rs.Namespace), client.Limit(storedPartsPage), client.MatchingLabels{
		v1alpha1.LabelAction:              string(v1alpha1.ActionSnapshot),
		v1alpha1.LabelOfficialAccountHash: v1alpha1.OfficialAccountHash(account),
	}}
	for continued := ""; ; {
		var list v1alpha1.OfficialAccountSubscriptionList
		listCtx, cancel := context.WithTimeout(ctx, apiTimeout)
		err := reader.List(listCtx, &list, append(opts, client.Continue(continued))...)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("reading the parts of snapshot %s: %w", plan.Snapshot, err)
		}
		for i := range list.Items {
			spec := &list.Items[i].Spec
			if spec.Snapshot == nil || spec.Snapshot.ID != plan.Snapshot || spec.OfficialAccount != account ||
				spec.Snapshot.Part < 1 || spec.Snapshot.Part > plan.Parts {
				continue
			}
			stored[spec.Snapshot.Part] = append(stored[spec.Snapshot.Part], spec.Subscribers...)
		}
		if continued = list.Continue; continued == "" {
			return stored, nil
		}
	}
}

// storedPartsPage bounds each list of an account's parts: at most 500 IDs each.
const storedPartsPage = 100

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

// createParts stores the parts, in order; retry tells that an earlier try of the snapshot
// stored parts, so that these get names of their own. One that exists already was stored
// by an earlier try with the same content.
func (r *run) createParts(ctx context.Context, account string, plan *v1alpha1.SnapshotInProgress, parts map[int32][]string, total int,
	retry bool) error {
	for _, part := range slices.Sorted(maps.Keys(parts)) {
		obj := snapshotPart(r.rs.Namespace, r.rs.Spec.SDKAppID, account, plan, part, parts[part], total, retry)
		createCtx, cancel := context.WithTimeout(ctx, apiTimeout)
		err := r.Create(createCtx, obj)
		cancel()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("storing part %d/%d of the snapshot: %w", part, plan.Parts, err)
		}
	}
	return nil
}
