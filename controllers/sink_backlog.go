package controllers

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
)

// sinkBacklog is what the stored events wait for at one sink.
type sinkBacklog struct {
	pending, retrying, failed, deadLettered int32
	oldestPending                           *metav1.Time
}

// backlogShare is what one event adds to one sink's backlog.
type backlogShare struct {
	pending, retrying bool
	pendingSince      metav1.Time // when pending
	failed            bool
	deadLetter        v1alpha1.DeliveryState // of the failed delivery; "" when it has none
}

// sinkBacklogs holds, for every sink, the share of each event that waits for it or gave
// up on it, kept up to date by the events' informer (it is one of the informer's event
// handlers). A sink's status is summed from its shares, about 130 bytes each: counting
// by listing the cache copied every event the sink waits for every interval, 20,000 or
// more on the day it is down.
type sinkBacklogs struct {
	mu     sync.Mutex
	bySink map[types.NamespacedName]map[types.UID]backlogShare
}

var _ toolscache.ResourceEventHandler = (*sinkBacklogs)(nil)

func newSinkBacklogs() *sinkBacklogs {
	return &sinkBacklogs{bySink: map[types.NamespacedName]map[types.UID]backlogShare{}}
}

func (b *sinkBacklogs) OnAdd(obj any, _ bool) { b.OnUpdate(nil, obj) }

// OnUpdate replaces the event's shares: the informer hands each handler every change of
// an object in order, the old copy being the one it handed before. After a relist the
// old copy can be another event of the same name (deleted and stored again while the
// watch was down), whose shares all go.
func (b *sinkBacklogs) OnUpdate(oldObj, newObj any) {
	sub, ok := newObj.(*v1alpha1.OfficialAccountSubscription)
	if !ok {
		return
	}
	shares := backlogSharesOf(sub)
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := oldObj.(*v1alpha1.OfficialAccountSubscription); ok {
		for sink := range backlogSharesOf(old) {
			if _, still := shares[sink]; !still || old.UID != sub.UID {
				b.drop(types.NamespacedName{Namespace: old.Namespace, Name: sink}, old.UID)
			}
		}
	}
	for sink, share := range shares {
		key := types.NamespacedName{Namespace: sub.Namespace, Name: sink}
		if b.bySink[key] == nil {
			b.bySink[key] = map[types.UID]backlogShare{}
		}
		b.bySink[key][sub.UID] = share
	}
}

// OnDelete drops the event's shares. A delete the informer missed comes as a tombstone
// holding the object's last known copy, which is the copy the shares came from.
func (b *sinkBacklogs) OnDelete(obj any) {
	if tombstone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	sub, ok := obj.(*v1alpha1.OfficialAccountSubscription)
	if !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for sink := range backlogSharesOf(sub) {
		b.drop(types.NamespacedName{Namespace: sub.Namespace, Name: sink}, sub.UID)
	}
}

func (b *sinkBacklogs) drop(sink types.NamespacedName, event types.UID) {
	delete(b.bySink[sink], event)
	if len(b.bySink[sink]) == 0 {
		delete(b.bySink, sink)
	}
}

// Of sums the sink's shares.
func (b *sinkBacklogs) Of(sink types.NamespacedName) sinkBacklog {
	var sum sinkBacklog
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, share := range b.bySink[sink] {
		if share.pending {
			sum.pending++
			if share.retrying {
				sum.retrying++
			}
			if sum.oldestPending == nil || share.pendingSince.Before(sum.oldestPending) {
				sum.oldestPending = share.pendingSince.DeepCopy()
			}
		}
		if !share.failed {
			continue
		}
		switch share.deadLetter {
		case v1alpha1.DeliveryDelivered:
			sum.deadLettered++
		case v1alpha1.DeliveryPending: // on its way to the dead-letter sink, counted there
		default:
			sum.failed++
		}
	}
	return sum
}

// backlogSharesOf is what the event adds to each sink it waits for or gave up on, by the
// sink's name. An event counts once at a sink, as pending and as retrying (though its
// dead letter may go there too), and as failed. A replay's failed delivery is the
// replay's to report, not the sink's.
func backlogSharesOf(sub *v1alpha1.OfficialAccountSubscription) map[string]backlogShare {
	var shares map[string]backlogShare
	for _, d := range sub.Status.Sinks {
		sink := d.TargetSink()
		share := shares[sink]
		switch {
		case d.State == v1alpha1.DeliveryPending:
			share.pending = true
			share.retrying = share.retrying || d.Attempts > 0
		case d.State == v1alpha1.DeliveryFailed && d.Replay == "":
			share.failed = true
		default:
			continue
		}
		if shares == nil {
			shares = map[string]backlogShare{}
		}
		shares[sink] = share
	}
	for sink, share := range shares {
		if share.pending {
			share.pendingSince = delivery.PendingSince(sub, sink)
		}
		if share.failed {
			share.deadLetter = delivery.DeadLetterState(sub, sink)
		}
		shares[sink] = share
	}
	return shares
}
