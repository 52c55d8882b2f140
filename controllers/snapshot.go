package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// snapshotID names the snapshot of an account's subscribers taken at t: the same inputs
// give the same name, so a resync retried after a crash stores the same resources again
// instead of a second snapshot.
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

// snapshotEvents are the resources that store one snapshot: the subscribers in parts of
// at most MaxSubscribersPerResource, in Tencent's order, at least one part (an account
// without subscribers still has a snapshot: everyone left).
func snapshotEvents(namespace, sdkAppID, account string, t time.Time, subscribers []string) []*v1alpha1.OfficialAccountSubscription {
	id := snapshotID(sdkAppID, account, t)
	chunks := slices.Collect(slices.Chunk(subscribers, v1alpha1.MaxSubscribersPerResource))
	if len(chunks) == 0 {
		chunks = [][]string{{}}
	}
	at := metav1.NewTime(t)
	objs := make([]*v1alpha1.OfficialAccountSubscription, len(chunks))
	for i, part := range chunks {
		objs[i] = &v1alpha1.OfficialAccountSubscription{
			ObjectMeta: metav1.ObjectMeta{
				Name:      id + "-" + strconv.Itoa(i+1),
				Namespace: namespace,
				Labels: map[string]string{
					v1alpha1.LabelSDKAppID:            sdkAppID,
					v1alpha1.LabelAction:              string(v1alpha1.ActionSnapshot),
					v1alpha1.LabelOfficialAccountHash: webhookserver.OfficialAccountHash(account),
				},
				Annotations: map[string]string{v1alpha1.AnnotationPart: fmt.Sprintf("%d/%d", i+1, len(chunks))},
			},
			Spec: v1alpha1.OfficialAccountSubscriptionSpec{
				SDKAppID:        sdkAppID,
				CallbackCommand: v1alpha1.CommandSnapshot,
				Action:          v1alpha1.ActionSnapshot,
				OfficialAccount: account,
				Subscribers:     slices.Clip(part),
				SubscriberCount: int32(len(part)),
				EventTime:       t.UnixMilli(),
				ReceivedTime:    at,
				Snapshot: &v1alpha1.SnapshotPart{ID: id, Part: int32(i + 1), Parts: int32(len(chunks)),
					Subscribers: int32(len(subscribers))},
			},
		}
	}
	return objs
}
