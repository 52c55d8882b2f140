package controllers

import (
	"sync/atomic"

	toolscache "k8s.io/client-go/tools/cache"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
)

// pendingCount is the number of events in one namespace that count against
// --max-pending-events, kept up to date by the events' informer (it is one of the
// informer's event handlers). Reading it costs the same whatever the backlog; counting
// by listing the cache every interval cost a pass over every cached event, 20,000 or more
// on the day a sink is down.
type pendingCount struct {
	namespace string
	n         atomic.Int64
}

var _ toolscache.ResourceEventHandler = (*pendingCount)(nil)

// Pending is the count as of the last change the informer reported. It cannot fall below
// zero under the informer's contract; were it ever to, no count is a truer floor than 0.
func (c *pendingCount) Pending() int { return max(0, int(c.n.Load())) }

func (c *pendingCount) OnAdd(obj any, _ bool) { c.n.Add(c.weight(obj)) }

// OnUpdate moves the count by the change between the informer's old and new copies: the
// informer hands each handler every change of an object in order, the old copy being the
// one it handed before or a copy of the same resourceVersion.
func (c *pendingCount) OnUpdate(oldObj, newObj any) { c.n.Add(c.weight(newObj) - c.weight(oldObj)) }

func (c *pendingCount) OnDelete(obj any) { c.n.Add(-c.weight(obj)) }

// weight is 1 for an event that counts as pending, 0 for anything else. A delete the
// informer missed comes as a tombstone holding the object's last known copy, which is
// the copy the count included.
func (c *pendingCount) weight(obj any) int64 {
	if tombstone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	sub, ok := obj.(*v1alpha1.OfficialAccountSubscription)
	if !ok || sub.Namespace != c.namespace || !countsAsPending(sub) {
		return 0
	}
	return 1
}

// countsAsPending reports whether the event counts against --max-pending-events: it is
// not complete, and it is neither a snapshot part, which has a budget of its own
// (--max-pending-snapshot-parts) so that a few large accounts cannot push callbacks, which
// Tencent never resends, into 503, nor an event that waits only for replays, which resend
// events stored long ago and must never cost a callback.
func countsAsPending(sub *v1alpha1.OfficialAccountSubscription) bool {
	return sub.Status.CompletionTime == nil && sub.Spec.Action != v1alpha1.ActionSnapshot &&
		!delivery.OnlyReplaysPending(&sub.Status)
}
