package webhookserver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// eventName derives a resource name from what identifies an event, so that a repeated
// delivery of the same event (Tencent's optional retry on timeout) finds its resource
// already there. Subscribers count as a set: their order does not make another event.
// Each field is length-prefixed so that no two field lists hash alike.
func eventName(cb Callback) string {
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s;", len(s), s) }
	field(cb.SDKAppID)
	field(cb.Command)
	field(cb.OfficialAccount)
	field(cb.OperatorAccount)
	field(strconv.FormatInt(cb.EventTime, 10))
	// Only the destroyed callback has these; leaving them out otherwise keeps the names
	// of subscriber events as they were.
	if cb.OwnerAccount != "" || cb.AccountName != "" {
		field(cb.OwnerAccount)
		field(cb.AccountName)
	}
	subscribers := slices.Clone(cb.Subscribers)
	slices.Sort(subscribers)
	for _, s := range slices.Compact(subscribers) {
		field(s)
	}
	return "oasub-" + hex.EncodeToString(h.Sum(nil))[:24]
}

// subscriptionsFor turns one callback into the resources that store it: one, or several
// when it names more subscribers than one resource holds. Parts are cut in the order
// received and named after the whole event, so a repeated delivery maps to the same names.
func subscriptionsFor(cb Callback, namespace string, received metav1.Time) []*v1alpha1.OfficialAccountSubscription {
	name := eventName(cb)
	accountHash := v1alpha1.OfficialAccountHash(cb.OfficialAccount)
	chunks := slices.Collect(slices.Chunk(cb.Subscribers, v1alpha1.MaxSubscribersPerResource))
	if len(chunks) == 0 {
		chunks = [][]string{{}} // AccountDestroyed names no subscribers
	}
	objs := make([]*v1alpha1.OfficialAccountSubscription, 0, len(chunks))
	for i, subscribers := range chunks {
		obj := &v1alpha1.OfficialAccountSubscription{
			ObjectMeta: metav1.ObjectMeta{
				Name:      name,
				Namespace: namespace,
				Labels: map[string]string{
					v1alpha1.LabelSDKAppID:            cb.SDKAppID,
					v1alpha1.LabelAction:              string(cb.Action),
					v1alpha1.LabelOfficialAccountHash: accountHash,
				},
			},
			Spec: v1alpha1.OfficialAccountSubscriptionSpec{
				SDKAppID:        cb.SDKAppID,
				CallbackCommand: cb.Command,
				Action:          cb.Action,
				OfficialAccount: cb.OfficialAccount,
				OperatorAccount: cb.OperatorAccount,
				OwnerAccount:    cb.OwnerAccount,
				AccountName:     cb.AccountName,
				Subscribers:     subscribers,
				SubscriberCount: int32(len(subscribers)),
				EventTime:       cb.EventTime,
				ClientIP:        cb.ClientIP,
				OptPlatform:     cb.OptPlatform,
				ReceivedTime:    received,
			},
		}
		if len(chunks) > 1 {
			obj.Name = fmt.Sprintf("%s-%d", name, i+1)
			obj.Annotations = map[string]string{v1alpha1.AnnotationPart: fmt.Sprintf("%d/%d", i+1, len(chunks))}
		}
		objs = append(objs, obj)
	}
	return objs
}
