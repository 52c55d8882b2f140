package controllers

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// A lane runs at most its limit at once, keeps the next deliveries queued and starts them
// by itself as places free up, and past its queue sends the event back to be reconciled
// when there is room. Another sink's lane is not affected.
func TestLanesHoldTheirLimitAndQueueTheRest(t *testing.T) {
	stopped := make(chan struct{})
	lanes := newDeliveryLanes(stopped, context.Background())
	defer close(stopped)
	requeued := make(chan types.NamespacedName, 1000)
	go func() {
		for ev := range lanes.requeue {
			requeued <- types.NamespacedName{Namespace: ev.Object.GetNamespace(), Name: ev.Object.GetName()}
		}
	}()

	release := make(chan struct{})
	var running, most, ran atomic.Int32
	hung := func(context.Context) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		running.Add(-1)
		ran.Add(1)
	}
	const limit = 2
	nothingAttempted := func() bool { return false }
	results := map[handOff]int{}
	total := limit + laneQueueLength + 3
	for i := range total {
		event := types.NamespacedName{Namespace: "events", Name: fmt.Sprintf("oasub-%d", i)}
		results[lanes.start(deliveryID{event: types.UID(event.Name), sink: "events/hung"}, event, limit, nothingAttempted, hung)]++
	}
	if results[handOffStarted] != limit || results[handOffUnderWay] != laneQueueLength || results[handOffLaneFull] != 3 {
		t.Fatalf("hand-offs %v, want %d started, %d queued, 3 sent back", results, limit, laneQueueLength)
	}
	again := lanes.start(deliveryID{event: "oasub-0", sink: "events/hung"}, types.NamespacedName{Namespace: "events", Name: "oasub-0"},
		limit, nothingAttempted, hung)
	if again != handOffUnderWay {
		t.Fatalf("a delivery already running was started again: %v", again)
	}

	healthyDone := make(chan struct{})
	if got := lanes.start(deliveryID{event: "other", sink: "events/healthy"}, types.NamespacedName{Namespace: "events", Name: "other"},
		limit, nothingAttempted, func(context.Context) { close(healthyDone) }); got != handOffStarted {
		t.Fatalf("another sink's delivery waited for the hung sink's lane: %v", got)
	}
	select {
	case <-healthyDone:
	case <-time.After(10 * time.Second):
		t.Fatal("another sink's delivery did not run while the hung sink's lane was full")
	}

	close(release) // the hung sink answers
	lanes.drain(time.Now().Add(10 * time.Second))
	if got := ran.Load(); got != int32(limit+laneQueueLength) {
		t.Fatalf("%d deliveries ran, want the %d started and queued", got, limit+laneQueueLength)
	}
	if most.Load() > limit {
		t.Fatalf("%d deliveries ran at once, limit %d", most.Load(), limit)
	}
	seen := map[types.NamespacedName]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < total+1 {
		select {
		case key := <-requeued:
			seen[key] = true
		case <-deadline:
			t.Fatalf("%d of %d events were reconciled again", len(seen), total+1)
		}
	}
}

// A term that ends drops the deliveries still queued: their events stay pending for the
// next leader, instead of being tried against a context about to be cancelled.
func TestLanesDropTheQueueWhenTheTermEnds(t *testing.T) {
	stopped := make(chan struct{})
	lanes := newDeliveryLanes(stopped, context.Background())
	var mu sync.Mutex
	ran := 0
	release := make(chan struct{})
	deliver := func(context.Context) {
		<-release
		mu.Lock()
		ran++
		mu.Unlock()
	}
	for i := range 5 {
		event := types.NamespacedName{Namespace: "events", Name: fmt.Sprintf("oasub-%d", i)}
		lanes.start(deliveryID{event: types.UID(event.Name), sink: "events/s"}, event, 1, func() bool { return false }, deliver)
	}
	close(stopped)
	close(release)
	lanes.drain(time.Now().Add(10 * time.Second))
	if ran != 1 {
		t.Fatalf("%d deliveries ran after the term ended, want only the one under way", ran)
	}
}
