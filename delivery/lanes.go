package delivery

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// Lanes run deliveries outside the reconcile workers, in one lane per sink with an
// in-flight limit of its own: a sink that hangs fills its own lane and no other, and no
// worker waits for it. A reconcile hands a due delivery to its sink's lane and returns;
// when the delivery ends, its outcome waits in the Ledger and the event is queued again to
// write it. A delivery that finds its lane full waits in the lane's queue and starts as
// soon as a place frees up, without another reconcile; once that queue is full too, the
// event itself is reconciled again when the queue has room, so that a hung sink holds a
// bounded number of event copies in memory, not its whole backlog. Which deliveries are
// under way is the Ledger's to know, not the lanes'.
type Lanes struct {
	mu      sync.Mutex
	lanes   map[string]*lane // by sink, namespace/name
	running sync.WaitGroup
	// wakes are the paced wakes under way, by sink: the generation of the latest.
	wakes          map[string]uint64
	wakeGeneration uint64

	// Requeue receives the events to reconcile again; nothing is sent once stopped closes.
	Requeue chan event.TypedGenericEvent[client.Object]
	stopped <-chan struct{}

	// ctx is the deliveries' context: it outlives the term, so that a delivery under way
	// at an orderly shutdown can finish and be recorded, until Abandon cancels it.
	ctx     context.Context
	abandon context.CancelFunc
}

// lane is one sink's deliveries: how many run, those queued to run next, and the events
// waiting for room in the queue.
type lane struct {
	running int
	queue   []Job
	waiting []types.NamespacedName
	queued  map[types.NamespacedName]bool
}

// Job is one delivery of one event to one sink.
type Job struct {
	Sink  string // the lane: the sink's namespace/name
	Event types.NamespacedName
	// Run makes the attempt; Drop ends a job that will not run (the term ended).
	Run  func(ctx context.Context)
	Drop func()
}

// laneQueueLength is how many deliveries a full lane keeps ready to start: enough for a
// burst of callbacks to flow through without a reconcile per delivery, few enough that a
// hung sink holds a couple of MiB of event copies, not its whole backlog.
const laneQueueLength = 1024

// NewLanes returns the lanes of a term that ends when stopped closes. base gives the
// deliveries' context its values, not its end.
func NewLanes(stopped <-chan struct{}, base context.Context) *Lanes {
	ctx, abandon := context.WithCancel(context.WithoutCancel(base))
	return &Lanes{
		lanes:   map[string]*lane{},
		Requeue: make(chan event.TypedGenericEvent[client.Object], 1024),
		stopped: stopped,
		ctx:     ctx,
		abandon: abandon,
	}
}

// Start runs the job in its sink's lane, or queues it there; it reports false when the
// lane's queue is full too, and the event is then reconciled again once there is room,
// and once the term is over.
func (l *Lanes) Start(job Job, limit int) bool {
	select {
	case <-l.stopped:
		return false
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.lanes[job.Sink]
	if ln == nil {
		ln = &lane{queued: map[types.NamespacedName]bool{}}
		l.lanes[job.Sink] = ln
	}
	switch {
	case ln.running < limit:
		ln.running++
		l.running.Add(1)
		go l.run(job)
		return true
	case len(ln.queue) < laneQueueLength:
		ln.queue = append(ln.queue, job)
		return true
	default:
		if !ln.queued[job.Event] {
			ln.queued[job.Event] = true
			ln.waiting = append(ln.waiting, job.Event)
		}
		return false
	}
}

// run delivers, then the lane's queued deliveries one after another while there are any,
// keeping the place it holds.
func (l *Lanes) run(next Job) {
	defer l.running.Done()
	for {
		next.Run(l.ctx)
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
func (l *Lanes) finish(done Job) (Job, bool) {
	l.mu.Lock()
	ln := l.lanes[done.Sink]
	var next Job
	haveNext := false
	var dropped []Job
	select {
	case <-l.stopped:
		dropped, ln.queue = ln.queue, nil
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
			delete(l.lanes, done.Sink)
		}
	}
	l.mu.Unlock()
	for _, job := range dropped {
		job.Drop()
	}
	l.ReconcileAgain(done.Event)
	if woken != nil {
		l.ReconcileAgain(*woken)
	}
	return next, haveNext
}

// ReconcileAgain queues the event for another reconcile, unless the term is over.
func (l *Lanes) ReconcileAgain(key types.NamespacedName) {
	obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case l.Requeue <- event.TypedGenericEvent[client.Object]{Object: obj}:
	case <-l.stopped:
		// The term is over; the outcome is written by WriteUnwrittenOutcomes.
	}
}

// Drain waits until every delivery has ended or the deadline has passed, then cancels
// those still running and waits for them to return.
func (l *Lanes) Drain(deadline time.Time) {
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

// Abandon cancels every delivery under way at once: the lease is lost, and another replica
// may lead already.
func (l *Lanes) Abandon() { l.abandon() }

// MaxInFlight is the sink's lane size.
func MaxInFlight(limit *int32) int {
	if limit == nil || *limit < 1 {
		return defaultMaxInFlight
	}
	return int(*limit)
}

// defaultMaxInFlight matches the CRD's default, for sinks stored before the field existed.
const defaultMaxInFlight = 8
