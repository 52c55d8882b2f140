package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// firstWriteDeferral is how long a new event's first status may wait for its deliveries.
// Almost all end within it, and the event then gets one status write, the final one,
// instead of "delivering" and then "delivered": a status write is the costliest request
// of an event's life, and a burst of callbacks queues deliveries for many seconds. An
// event whose deliveries are still under way after it gets the "delivering" status (so
// a hung sink's events show up as pending after its timeout, or after this at most).
const firstWriteDeferral = 30 * time.Second

// deferredFirstWrites remembers the new events whose first status write was put off
// while their deliveries run, with the sinks they were matched with, so that the
// reconcile that writes the status does not match them again against a later list.
type deferredFirstWrites struct {
	mu     sync.Mutex
	events map[types.NamespacedName]deferredWrite
}

type deferredWrite struct {
	uid   types.UID
	since time.Time
	sinks []string
}

// deferIfUnderWay puts off the first status write of sub while every delivery it waits
// for is in its lane (running, or waiting for a place), for firstWriteDeferral after the
// first time at most. It returns how long the write may still wait, 0 if not at all.
func (d *deferredFirstWrites) deferIfUnderWay(sub *v1alpha1.OfficialAccountSubscription, lanes handedOff, now time.Time) time.Duration {
	var sinks []string
	for _, delivery := range sub.Status.Sinks {
		if delivery.State == v1alpha1.DeliveryPending && !lanes.underWay[delivery.Name] {
			return 0
		}
		sinks = append(sinks, delivery.Name)
	}
	if len(lanes.underWay) == 0 {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	key := types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name}
	cur, ok := d.events[key]
	if !ok || cur.uid != sub.UID {
		if d.events == nil {
			d.events = map[types.NamespacedName]deferredWrite{}
		}
		cur = deferredWrite{uid: sub.UID, since: now, sinks: sinks}
		d.events[key] = cur
	}
	if left := cur.since.Add(firstWriteDeferral).Sub(now); left > 0 {
		return left
	}
	return 0
}

// matched returns the sinks sub was matched with when its first write was put off.
func (d *deferredFirstWrites) matched(sub *v1alpha1.OfficialAccountSubscription) ([]string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, ok := d.events[types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name}]
	if !ok || cur.uid != sub.UID {
		return nil, false
	}
	return cur.sinks, true
}

// written forgets the event once a status of it is stored, or it is gone.
func (d *deferredFirstWrites) written(key types.NamespacedName) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.events, key)
}
