package controllers

import (
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// UnwrittenOutcomes keeps the outcome of each delivery attempt until the status that
// records it is written. A sink that accepted an event must not get it again because the
// status write after it failed (the API server down, a conflict, a shutdown): the next
// reconcile takes the outcome from here instead of delivering. At-least-once stays the
// contract: a crash between the sink's answer and the write still repeats that delivery.
// One serves a whole process, so that a replica elected again after losing the lease
// still knows what it delivered; the zero value is ready to use.
type UnwrittenOutcomes struct {
	mu      sync.Mutex
	byEvent map[types.NamespacedName]eventOutcomes
}

// eventOutcomes are one object's unwritten outcomes, by sink name. The UID tells a
// re-created object of the same name (a repeated callback after retention) from the one
// that was delivered.
type eventOutcomes struct {
	uid    types.UID
	bySink map[string]v1alpha1.SinkDelivery
}

// remember keeps d, the state of a delivery after an attempt, for the object.
func (o *UnwrittenOutcomes) remember(sub *v1alpha1.OfficialAccountSubscription, d v1alpha1.SinkDelivery) {
	o.mu.Lock()
	defer o.mu.Unlock()
	key := types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name}
	if o.byEvent == nil {
		o.byEvent = map[types.NamespacedName]eventOutcomes{}
	}
	ev, ok := o.byEvent[key]
	if !ok || ev.uid != sub.UID {
		ev = eventOutcomes{uid: sub.UID, bySink: map[string]v1alpha1.SinkDelivery{}}
		o.byEvent[key] = ev
	}
	ev.bySink[d.Name] = *d.DeepCopy()
}

// applyTo puts into sub's status every remembered outcome that is newer than what the
// status says (more attempts), and reports whether it changed anything. A delivery the
// status does not list yet (its first write failed) is added.
func (o *UnwrittenOutcomes) applyTo(sub *v1alpha1.OfficialAccountSubscription) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	ev, ok := o.byEvent[types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name}]
	if !ok || ev.uid != sub.UID {
		return false
	}
	changed, added := false, false
	for name, kept := range ev.bySink {
		i := slices.IndexFunc(sub.Status.Sinks, func(d v1alpha1.SinkDelivery) bool { return d.Name == name })
		switch {
		case i < 0:
			sub.Status.Sinks = append(sub.Status.Sinks, *kept.DeepCopy())
			added = true
		case kept.Attempts > sub.Status.Sinks[i].Attempts:
			sub.Status.Sinks[i] = *kept.DeepCopy()
		default:
			continue
		}
		changed = true
	}
	if added {
		sortByName(sub.Status.Sinks)
	}
	return changed
}

// attemptedSince reports whether an outcome is kept for d's delivery with more attempts
// than d: the sink has answered an attempt the status does not record yet.
func (o *UnwrittenOutcomes) attemptedSince(sub *v1alpha1.OfficialAccountSubscription, d *v1alpha1.SinkDelivery) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	ev, ok := o.byEvent[types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name}]
	if !ok || ev.uid != sub.UID {
		return false
	}
	kept, ok := ev.bySink[d.Name]
	return ok && kept.Attempts > d.Attempts
}

// recorded drops the outcomes that sub's stored status records. Deliveries to other sinks
// may have ended since the status was computed; theirs stay.
func (o *UnwrittenOutcomes) recorded(sub *v1alpha1.OfficialAccountSubscription) {
	o.mu.Lock()
	defer o.mu.Unlock()
	key := types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name}
	ev, ok := o.byEvent[key]
	if !ok {
		return
	}
	if ev.uid == sub.UID {
		for _, d := range sub.Status.Sinks {
			if kept, ok := ev.bySink[d.Name]; ok && kept.Attempts <= d.Attempts {
				delete(ev.bySink, d.Name)
			}
		}
		if len(ev.bySink) > 0 {
			return
		}
	}
	delete(o.byEvent, key)
}

// forget drops the object's outcomes, once it is gone.
func (o *UnwrittenOutcomes) forget(key types.NamespacedName) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.byEvent, key)
}

// keys lists the objects with unwritten outcomes.
func (o *UnwrittenOutcomes) keys() []types.NamespacedName {
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := make([]types.NamespacedName, 0, len(o.byEvent))
	for k := range o.byEvent {
		keys = append(keys, k)
	}
	return keys
}
