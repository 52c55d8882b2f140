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
// again to write it. An event that finds its sink's lane full is queued again when a
// place in that lane frees up.
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

// lane is one sink's deliveries: how many run, and the events waiting for a place.
type lane struct {
	running int
	waiting []types.NamespacedName
	queued  map[types.NamespacedName]bool
}

// handOff is what became of a delivery handed to its lane.
type handOff int

const (
	handOffStarted handOff = iota
	// handOffUnderWay: this delivery is running, or its outcome is waiting to be written.
	handOffUnderWay
	// handOffLaneFull: the sink has MaxInFlight deliveries running; the event is queued
	// again when one ends.
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

// start runs deliver in the sink's lane unless the delivery is under way (running, or
// attempted reports an outcome not yet written) or the lane is full. attempted is asked
// after the running deliveries, under the lanes' lock: a delivery that ends meanwhile has
// kept its outcome before it leaves the running set, so one of the two always sees it.
func (l *deliveryLanes) start(id deliveryID, event types.NamespacedName, limit int, attempted func() bool,
	deliver func(ctx context.Context)) handOff {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, running := l.inFlight[id]; running || attempted() {
		return handOffUnderWay
	}
	ln := l.lanes[id.sink]
	if ln == nil {
		ln = &lane{queued: map[types.NamespacedName]bool{}}
		l.lanes[id.sink] = ln
	}
	if ln.running >= limit {
		if !ln.queued[event] {
			ln.queued[event] = true
			ln.waiting = append(ln.waiting, event)
		}
		return handOffLaneFull
	}
	ln.running++
	l.inFlight[id] = struct{}{}
	l.running.Add(1)
	go func() {
		defer l.running.Done()
		deliver(l.ctx)
		l.finish(id, event)
	}()
	return handOffStarted
}

// finish frees the delivery's place, and queues again its event (to write the outcome)
// and the first event waiting for the lane.
func (l *deliveryLanes) finish(id deliveryID, event types.NamespacedName) {
	l.mu.Lock()
	delete(l.inFlight, id)
	ln := l.lanes[id.sink]
	ln.running--
	var next *types.NamespacedName
	if len(ln.waiting) > 0 {
		next = &ln.waiting[0]
		ln.waiting = ln.waiting[1:]
		delete(ln.queued, *next)
	}
	if ln.running == 0 && len(ln.waiting) == 0 {
		delete(l.lanes, id.sink)
	}
	l.mu.Unlock()
	l.reconcileAgain(event)
	if next != nil {
		l.reconcileAgain(*next)
	}
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
const defaultMaxInFlight = 4
