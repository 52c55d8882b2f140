package controllers

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// deliveryLanes runs deliveries outside the reconcile workers, in one lane per sink with
// an in-flight limit of its own: a sink that hangs fills its own lane and no other, and no
// worker waits for it. A reconcile hands a due delivery to its sink's lane and returns;
// when the delivery ends, its outcome waits in UnwrittenOutcomes and the event is queued
// again to write it. A delivery that finds its lane full waits in the lane's queue and
// starts as soon as a place frees up, without another reconcile; once that queue is full
// too, the event itself is reconciled again when the queue has room, so that a hung sink
// holds a bounded number of event copies in memory, not its whole backlog.
type deliveryLanes struct {
	mu       sync.Mutex
	lanes    map[string]*lane // by sink, namespace/name
	inFlight map[deliveryID]struct{}
	running  sync.WaitGroup

	// requeue receives the events to reconcile again; nothing is sent once stopped closes.
	requeue chan event.TypedGenericEvent[client.Object]
	stopped <-chan struct{}

	// ctx is the deliveries' context: it outlives the term, so that a delivery under way
	// at a shutdown can finish and be recorded, until abandon cancels it.
	ctx     context.Context
	abandon context.CancelFunc
}

// deliveryID is one event's delivery to one sink. The UID tells a re-created event of the
// same name from the one under way.
type deliveryID struct {
	event types.UID
	sink  string
}

// lane is one sink's deliveries: how many run, those queued to run next, and the events
// waiting for room in the queue.
type lane struct {
	running int
	queue   []queuedDelivery
	waiting []types.NamespacedName
	queued  map[types.NamespacedName]bool
}

type queuedDelivery struct {
	id      deliveryID
	event   types.NamespacedName
	deliver func(ctx context.Context)
}

// laneQueueLength is how many deliveries a full lane keeps ready to start: enough for a
// burst of callbacks to flow through without a reconcile per delivery, few enough that a
// hung sink holds a couple of MiB of event copies, not its whole backlog.
const laneQueueLength = 1024

// handOff is what became of a delivery handed to its lane.
type handOff int

const (
	handOffStarted handOff = iota
	// handOffUnderWay: this delivery is running or queued in its lane, or its outcome is
	// waiting to be written.
	handOffUnderWay
	// handOffLaneFull: the sink's lane and its queue are full; the event is reconciled
	// again when the queue has room.
	handOffLaneFull
)

func newDeliveryLanes(stopped <-chan struct{}, base context.Context) *deliveryLanes {
	ctx, abandon := context.WithCancel(context.WithoutCancel(base))
	return &deliveryLanes{
		lanes:    map[string]*lane{},
		inFlight: map[deliveryID]struct{}{},
		requeue:  make(chan event.TypedGenericEvent[client.Object], 1024),
		stopped:  stopped,
		ctx:      ctx,
		abandon:  abandon,
	}
}

// start runs deliver in the sink's lane, or queues it there, unless the delivery is under
// way (running or queued, or attempted reports an outcome not yet written) or the lane's
// queue is full. attempted is asked after the running deliveries, under the lanes' lock: a
// delivery that ends meanwhile has kept its outcome before it leaves the running set, so
// one of the two always sees it.
func (l *deliveryLanes) start(id deliveryID, event types.NamespacedName, limit int, attempted func() bool,
	deliver func(ctx context.Context)) handOff {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, underWay := l.inFlight[id]; underWay || attempted() {
		return handOffUnderWay
	}
	ln := l.lanes[id.sink]
	if ln == nil {
		ln = &lane{queued: map[types.NamespacedName]bool{}}
		l.lanes[id.sink] = ln
	}
	switch {
	case ln.running < limit:
		ln.running++
		l.inFlight[id] = struct{}{}
		l.running.Add(1)
		go l.run(queuedDelivery{id: id, event: event, deliver: deliver})
		return handOffStarted
	case len(ln.queue) < laneQueueLength:
		ln.queue = append(ln.queue, queuedDelivery{id: id, event: event, deliver: deliver})
		l.inFlight[id] = struct{}{}
		return handOffUnderWay
	default:
		if !ln.queued[event] {
			ln.queued[event] = true
			ln.waiting = append(ln.waiting, event)
		}
		return handOffLaneFull
	}
}

// run delivers, then the lane's queued deliveries one after another while there are any,
// keeping the place it holds.
func (l *deliveryLanes) run(next queuedDelivery) {
	defer l.running.Done()
	for {
		next.deliver(l.ctx)
		var ok bool
		next, ok = l.finish(next)
		if !ok {
			return
		}
	}
}

// finish ends a delivery: it queues its event again (to write the outcome), wakes the
// first event waiting for room in the queue, and returns the queued delivery to run next
// in this place, if any. Once the term is over, queued deliveries are dropped: their
// events are still pending, for whoever leads next.
func (l *deliveryLanes) finish(done queuedDelivery) (queuedDelivery, bool) {
	l.mu.Lock()
	delete(l.inFlight, done.id)
	ln := l.lanes[done.id.sink]
	var next queuedDelivery
	haveNext := false
	select {
	case <-l.stopped:
		for _, q := range ln.queue {
			delete(l.inFlight, q.id)
		}
		ln.queue = nil
	default:
		if len(ln.queue) > 0 {
			next, ln.queue, haveNext = ln.queue[0], ln.queue[1:], true
		}
	}
	var woken *types.NamespacedName
	if len(ln.waiting) > 0 && len(ln.queue) < laneQueueLength {
		woken = &ln.waiting[0]
		ln.waiting = ln.waiting[1:]
		delete(ln.queued, *woken)
	}
	if !haveNext {
		ln.running--
		if ln.running == 0 && len(ln.waiting) == 0 {
			delete(l.lanes, done.id.sink)
		}
	}
	l.mu.Unlock()
	l.reconcileAgain(done.event)
	if woken != nil {
		l.reconcileAgain(*woken)
	}
	return next, haveNext
}

func (l *deliveryLanes) reconcileAgain(key types.NamespacedName) {
	obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case l.requeue <- event.TypedGenericEvent[client.Object]{Object: obj}:
	case <-l.stopped:
		// The term is over; the outcome is written by WriteUnwrittenOutcomes.
	}
}

// drain waits until every delivery has ended or the deadline has passed, then cancels
// those still running and waits for them to return.
func (l *deliveryLanes) drain(deadline time.Time) {
	done := make(chan struct{})
	go func() { l.running.Wait(); close(done) }()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		l.abandon()
		<-done
	}
	l.abandon()
}

// maxInFlight is the sink's lane size.
func maxInFlight(limit *int32) int {
	if limit == nil || *limit < 1 {
		return defaultMaxInFlight
	}
	return int(*limit)
}

// defaultMaxInFlight matches the CRD's default, for sinks stored before the field existed.
const defaultMaxInFlight = 8
