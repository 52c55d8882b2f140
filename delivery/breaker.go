package delivery

import (
	"sync"
	"time"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// Circuit breaker defaults, the same as the CRD's, for sinks stored without them.
const (
	defaultConsecutiveFailures = 5
	defaultProbeInterval       = 30 * time.Second
	defaultMaxProbeInterval    = 5 * time.Minute
)

// breakerPolicy is a sink's CircuitBreaker with its defaults filled in.
type breakerPolicy struct {
	threshold     int // 0: off
	probe, maxGap time.Duration
}

func breakerPolicyOf(cb v1alpha1.CircuitBreaker) breakerPolicy {
	p := breakerPolicy{threshold: defaultConsecutiveFailures, probe: defaultProbeInterval, maxGap: defaultMaxProbeInterval}
	if cb.ConsecutiveFailures != nil {
		p.threshold = int(*cb.ConsecutiveFailures)
	}
	if cb.ProbeInterval != nil && cb.ProbeInterval.Duration > 0 {
		p.probe = cb.ProbeInterval.Duration
	}
	if cb.MaxProbeInterval != nil && cb.MaxProbeInterval.Duration > 0 {
		p.maxGap = cb.MaxProbeInterval.Duration
	}
	p.maxGap = max(p.maxGap, p.probe)
	return p
}

// Breakers keep a circuit breaker per sink. A sink whose attempts keep failing for its own
// reasons has its circuit opened: its pending deliveries are held, making no attempt and
// no status write, while one of them probes the sink now and then. The cost of an outage
// is then a probe per interval, not an attempt and a status write per pending event.
//
// The state lives in memory, for the replica that leads: a new leader starts with every
// circuit closed, and opens it again after as many failures. The zero value is ready.
type Breakers struct {
	mu      sync.Mutex
	bySink  map[string]*circuit // by namespace/name
	stopped bool                // the term is over: deliveries still draining open nothing

	// ProbeDue is called, outside the lock, when an open circuit's probe is due: it wakes
	// one held delivery of the sink, whose reconcile starts the probe. It is called again
	// every probe interval while no probe was admitted.
	ProbeDue func(sink string)
}

type circuit struct {
	failures  int // sink failures in a row, no success between
	open      bool
	openedAt  time.Time
	nextProbe time.Time
	gap       time.Duration // the wait before the next probe
	probing   bool          // a probe was admitted and has not ended
	trips     int32
	lastError string
	timer     *time.Timer
	// timerGeneration tells the armed timer from one replaced while it waited for the lock.
	timerGeneration uint64
}

// Transition is what an attempt's outcome did to its sink's circuit.
type Transition int

const (
	Unchanged Transition = iota
	Opened
	Closed
)

// CircuitView is a sink's circuit as its status shows it.
type CircuitView struct {
	Open      bool
	OpenedAt  time.Time
	NextProbe time.Time
	Trips     int32
	LastError string
	// Known: the breaker has seen an attempt to the sink since this replica began to lead.
	Known bool
}

// CircuitGate is what an open circuit means for the deliveries a plan considers.
type CircuitGate int

const (
	// Flowing: the circuit is closed; deliveries follow their own schedule.
	Flowing CircuitGate = iota
	// Holding: the circuit is open and no probe is due, or one is under way.
	Holding
	// Probing: the circuit is open and its probe is due: a pending delivery starts whatever
	// its own next attempt time, and the first to reach the sink is the probe.
	Probing
)

// Circuit says what the sink's circuit means for its deliveries now. A circuit the policy
// turns off is closed.
func (b *Breakers) Circuit(sink string, cb v1alpha1.CircuitBreaker, now time.Time) CircuitGate {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gateLocked(sink, cb, now)
}

// Admit decides, when a delivery's turn comes, whether it makes its attempt: always while
// the circuit is closed; while it is open, only as the one probe, once it is due.
func (b *Breakers) Admit(sink string, cb v1alpha1.CircuitBreaker, now time.Time) (admitted, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.gateLocked(sink, cb, now) {
	case Flowing:
		return true, false
	case Probing:
		b.bySink[sink].probing = true
		return true, true
	}
	return false, false
}

func (b *Breakers) gateLocked(sink string, cb v1alpha1.CircuitBreaker, now time.Time) CircuitGate {
	c := b.bySink[sink]
	switch {
	case c == nil || !c.open:
		return Flowing
	case breakerPolicyOf(cb).threshold == 0:
		b.closeLocked(sink, c)
		return Flowing
	case c.probing || now.Before(c.nextProbe):
		return Holding
	}
	return Probing
}

// Record counts an attempt's outcome. Failures for the sink's reasons (every error but an
// event's rejection) count towards opening; anything the sink answered closes an open
// circuit when it was the probe, and resets the count.
func (b *Breakers) Record(sink string, cb v1alpha1.CircuitBreaker, probe bool, err error, now time.Time) Transition {
	policy := breakerPolicyOf(cb)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return Unchanged
	}
	if b.bySink == nil {
		b.bySink = map[string]*circuit{}
	}
	c := b.bySink[sink]
	if c == nil {
		c = &circuit{}
		b.bySink[sink] = c
	}
	if err == nil || sinks.IsPermanent(err) {
		// Any answer closes an open circuit, the probe's or that of an attempt which began
		// before the circuit opened: the sink is back.
		c.failures = 0
		if c.open {
			b.closeLocked(sink, c)
			return Closed
		}
		return Unchanged
	}
	c.failures++
	c.lastError = truncate(err.Error())
	switch {
	case c.open && probe:
		c.probing = false
		c.gap = min(2*c.gap, policy.maxGap)
		b.scheduleLocked(sink, c, now)
	case !c.open && policy.threshold > 0 && c.failures >= policy.threshold:
		c.open, c.openedAt, c.gap, c.probing = true, now, policy.probe, false
		c.trips++
		sinkCircuitOpen.WithLabelValues(sink).Set(1)
		sinkCircuitTrips.WithLabelValues(sink).Inc()
		b.scheduleLocked(sink, c, now)
		return Opened
	}
	return Unchanged
}

// ProbeAbandoned gives an admitted probe back: it made no attempt (cancelled, or its sink
// changed), so another may be made.
func (b *Breakers) ProbeAbandoned(sink string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.bySink[sink]; c != nil {
		c.probing = false
	}
}

// View returns the sink's circuit.
func (b *Breakers) View(sink string) CircuitView {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.bySink[sink]
	if c == nil {
		return CircuitView{}
	}
	return CircuitView{Open: c.open, OpenedAt: c.openedAt, NextProbe: c.nextProbe, Trips: c.trips, LastError: c.lastError, Known: true}
}

// Reset closes the sink's circuit and forgets its failures: its configuration changed,
// which deserves a new chance at once.
func (b *Breakers) Reset(sink string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.bySink[sink]; c != nil {
		b.closeLocked(sink, c)
		c.failures = 0
	}
}

// Forget drops a deleted sink's circuit.
func (b *Breakers) Forget(sink string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.bySink[sink]; c != nil {
		b.closeLocked(sink, c)
		delete(b.bySink, sink)
	}
	forgetCircuitMetrics(sink)
}

// Stop ends every probe timer and drops the metrics: the term is over, and only a leader
// exports them.
func (b *Breakers) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	for sink, c := range b.bySink {
		b.closeLocked(sink, c)
		delete(b.bySink, sink)
		forgetCircuitMetrics(sink)
	}
}

func (b *Breakers) closeLocked(sink string, c *circuit) {
	if c.open {
		sinkCircuitOpen.WithLabelValues(sink).Set(0)
	}
	c.open, c.probing, c.nextProbe, c.gap = false, false, time.Time{}, 0
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
}

// scheduleLocked sets the next probe one gap from now and arms the timer that wakes it.
func (b *Breakers) scheduleLocked(sink string, c *circuit, now time.Time) {
	c.nextProbe = now.Add(c.gap)
	if c.timer != nil {
		c.timer.Stop()
	}
	b.armLocked(sink, c)
}

// armLocked arms the circuit's timer one gap from now. A timer that fires after another
// replaced it does nothing: Stop cannot recall one already waiting for the lock.
func (b *Breakers) armLocked(sink string, c *circuit) {
	c.timerGeneration++
	generation := c.timerGeneration
	c.timer = time.AfterFunc(c.gap, func() { b.probeDue(sink, c, generation) })
}

// probeDue wakes a held delivery to probe the sink, and looks again one gap later in case
// that delivery made no probe (it was delivered meanwhile, or its reconcile failed).
func (b *Breakers) probeDue(sink string, c *circuit, generation uint64) {
	b.mu.Lock()
	if b.bySink[sink] != c || !c.open || c.timer == nil || c.timerGeneration != generation {
		b.mu.Unlock()
		return
	}
	wake := !c.probing
	b.armLocked(sink, c)
	b.mu.Unlock()
	if wake && b.ProbeDue != nil {
		b.ProbeDue(sink)
	}
}
