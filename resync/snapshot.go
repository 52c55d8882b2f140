package resync

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// clockSkew moves a snapshot's time T back from the operator's clock before its listing
// begins. Sinks compare T with Tencent's EventTime, which comes from Tencent's clock: with
// the operator's clock ahead by δ, a member who subscribed within δ after their page was
// read would otherwise look older than the snapshot that does not list them, and be
// unsubscribed. Moving T back only makes a snapshot yield to more events.
const clockSkew = 5 * time.Second

// snapshotTime is T for a listing that begins at now: clockSkew earlier, to the
// millisecond that events carry.
func snapshotTime(now time.Time) time.Time { return now.Add(-clockSkew).Truncate(time.Millisecond) }

// snapshotID names the snapshot of an account's subscribers taken at t: the same inputs
// give the same name, so a resync retried with the same T stores the same resources.
func snapshotID(sdkAppID, account string, t time.Time) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s;%d:%s;%d", len(sdkAppID), sdkAppID, len(account), account, t.UnixMilli())
	return "oasnap-" + hex.EncodeToString(h.Sum(nil))[:24]
}

// subscribersHash is a hash of the sorted subscribers, to tell whether two resyncs found
// the same set.
func subscribersHash(subscribers []string) string {
	sorted := slices.Sorted(slices.Values(subscribers))
	h := sha256.New()
	for _, s := range sorted {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// newPlan is a snapshot of n subscribers taken at t: ceil(n/500) parts, at least one (an
// account without subscribers still has a snapshot: everyone left).
func newPlan(sdkAppID, account string, t time.Time, n int) *v1alpha1.SnapshotInProgress {
	parts := max((n+v1alpha1.MaxSubscribersPerResource-1)/v1alpha1.MaxSubscribersPerResource, 1)
	return &v1alpha1.SnapshotInProgress{Snapshot: snapshotID(sdkAppID, account, t), EventTime: t.UnixMilli(), Parts: int32(parts)}
}

// partName is the resource name of one part as the snapshot's first try stores it.
func partName(plan *v1alpha1.SnapshotInProgress, part int32) string {
	return plan.Snapshot + "-" + strconv.Itoa(int(part))
}

// restoredPartName is the resource name of a part that a later try of the snapshot stores
// (the first try's was refused, or was delivered and deleted by retention): the name is
// what receivers deduplicate by (Idempotency-Key, ce-id, Nats-Msg-Id), so a part stored
// again with other members must not reuse an earlier copy's. A hash of its content tells
// it from every other copy of the part; a copy with the same content may share it, and a
// receiver that drops it loses nothing.
func restoredPartName(plan *v1alpha1.SnapshotInProgress, part int32, subscribers []string, total int) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d;%d;", part, total)
	for _, s := range slices.Sorted(slices.Values(subscribers)) {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return partName(plan, part) + "-" + hex.EncodeToString(h.Sum(nil))[:10]
}

// fillParts places a listing into the parts of plan not yet stored. stored holds the
// parts that exist, with their subscribers; their members are not placed again. It
// returns the subscribers of each part to create (an empty list where nothing is left)
// and how many the whole snapshot lists, or false when the rest of the listing does not fit the parts left: the snapshot then
// starts anew with another T. A sink takes the union of each part's deliveries, so a
// part that was stored, delivered and deleted before a crash and is now stored again
// with other members (under another name, restoredPartName) loses no one.
func fillParts(plan *v1alpha1.SnapshotInProgress, stored map[int32][]string, listing []string) (map[int32][]string, int, bool) {
	have := map[string]bool{}
	for _, subscribers := range stored {
		for _, s := range subscribers {
			have[s] = true
		}
	}
	var rest []string
	for _, s := range listing {
		if !have[s] {
			rest = append(rest, s)
		}
	}
	total := len(have) + len(rest)
	out := map[int32][]string{}
	for part := int32(1); part <= plan.Parts; part++ {
		if _, ok := stored[part]; ok {
			continue
		}
		n := min(len(rest), v1alpha1.MaxSubscribersPerResource)
		out[part] = slices.Clip(append([]string{}, rest[:n]...))
		rest = rest[n:]
	}
	return out, total, len(rest) == 0
}

// snapshotPart is the resource that stores one part of a snapshot of total subscribers;
// retry tells that an earlier try of the snapshot stored parts (restoredPartName).
func snapshotPart(namespace, sdkAppID, account string, plan *v1alpha1.SnapshotInProgress, part int32, subscribers []string,
	total int, retry bool) *v1alpha1.OfficialAccountSubscription {
	t := time.UnixMilli(plan.EventTime)
	name := partName(plan, part)
	if retry {
		name = restoredPartName(plan, part, subscribers, total)
	}
	return &v1alpha1.OfficialAccountSubscription{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: namespace,
			Labels: map[string]string{
				v1alpha1.LabelSDKAppID:            sdkAppID,
				v1alpha1.LabelAction:              string(v1alpha1.ActionSnapshot),
				v1alpha1.LabelOfficialAccountHash: v1alpha1.OfficialAccountHash(account),
			},
			Annotations: map[string]string{v1alpha1.AnnotationPart: fmt.Sprintf("%d/%d", part, plan.Parts)},
		},
		Spec: v1alpha1.OfficialAccountSubscriptionSpec{
			SDKAppID:        sdkAppID,
			CallbackCommand: v1alpha1.CommandSnapshot,
			Action:          v1alpha1.ActionSnapshot,
			OfficialAccount: account,
			Subscribers:     subscribers,
			SubscriberCount: int32(len(subscribers)),
			EventTime:       plan.EventTime,
			ReceivedTime:    metav1.NewTime(t),
			Snapshot:        &v1alpha1.SnapshotPart{ID: plan.Snapshot, Part: part, Parts: plan.Parts, Subscribers: int32(total)},
		},
	}
}
