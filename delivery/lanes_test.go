package delivery

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
	lanes := NewLanes(stopped, context.Background())
	defer close(stopped)
	requeued := make(chan types.NamespacedName, 1000)
	go func() {
		for ev := range lanes.Requeue {
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
	job := func(sink string, i int, run func(context.Context)) Job {
		return Job{Sink: sink, Event: types.NamespacedName{Namespace: "events", Name: fmt.Sprintf("oasub-%d", i)}, Run: run, Drop: func() {}}
	}
	taken, sentBack := 0, 0
	total := limit + laneQueueLength + 3
	for i := range total {
		if lanes.Start(job("events/hung", i, hung), limit) {
			taken++
		} else {
			sentBack++
		}
	}
	if taken != limit+laneQueueLength || sentBack != 3 {
		t.Fatalf("%d taken, %d sent back; want %d started or queued, 3 sent back", taken, sentBack, limit+laneQueueLength)
	}

	healthyDone := make(chan struct{})
	if !lanes.Start(job("events/healthy", total, func(context.Context) { close(healthyDone) }), limit) {
		t.Fatal("another sink's delivery waited for the hung sink's lane")
	}
	select {
	case <-healthyDone:
	case <-time.After(10 * time.Second):
		t.Fatal("another sink's delivery did not run while the hung sink's lane was full")
	}

	close(release) // the hung sink answers
	lanes.Drain(time.Now().Add(10 * time.Second))
	if got := ran.Load(); got != int32(limit+laneQueueLength) {
		t.Fatalf("%d deliveries ran, want the %d started and queued", got, limit+laneQueueLength)
	}
	if most.Load() > limit {
		t.Fatalf("%d deliveries ran at once, limit %d", most.Load(), limit)
	}
	seen := map[types.NamespacedName]bool{}
	deadline := time.After(10 * time.Second)
	for len(seen) < total+1 { // every event, the healthy sink's included
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
	lanes := NewLanes(stopped, context.Background())
	var mu sync.Mutex
	ran, dropped := 0, 0
	release := make(chan struct{})
	deliver := func(context.Context) {
		<-release
		mu.Lock()
		ran++
		mu.Unlock()
	}
	for i := range 5 {
		event := types.NamespacedName{Namespace: "events", Name: fmt.Sprintf("oasub-%d", i)}
		drop := func() { mu.Lock(); dropped++; mu.Unlock() }
		lanes.Start(Job{Sink: "events/s", Event: event, Run: deliver, Drop: drop}, 1)
	}
	close(stopped)
	close(release)
	lanes.Drain(time.Now().Add(10 * time.Second))
	if ran != 1 || dropped != 4 {
		t.Fatalf("%d deliveries ran and %d were dropped after the term ended, want only the one under way run and 4 dropped", ran, dropped)
	}
}
