// Package storepressure makes deliveries give way to the webhook's stores while those are
// slow. The webhook reports how long each store took (ObserveStore); a reconcile asks for
// its turn (AdmitDelivery) before it delivers and writes.
//
// make bench measured it against Kubernetes' own lever, a FlowSchema that gives the
// webhook's creates a priority level of their own (docs/performance.md): priority and
// fairness shares out the API server's seats, and none were short, while the CPU that
// deliveries and stores share was. Yielding kept the answers' p99 lower; it stays.
package storepressure

import (
	"context"
	"math"
	"sync"
	"time"
)

// pressureHold paces the delivery limit: it is cut at most once per hold, and it grows by
// one delivery for each hold without a slow store.
const pressureHold = 100 * time.Millisecond

// usualStoreWindow: a store's usual time is the fastest store of the current window and
// the one before, so the usual time follows an API server that became slower for good
// within two windows, and one that became faster at once.
const usualStoreWindow = 10 * time.Second

// Pressure limits how many deliveries run at once while the webhook's stores are
// slow. The webhook and the reconciler share one API server. Storing an event cannot
// wait: Tencent gives up after 2 s and never retries. Delivering an event already stored
// loses nothing by starting a moment later. So when stores slow down, deliveries give way.
//
// Slow means slower than usual by more than a delay, not slower than a fixed time: an API
// server that always takes 40 ms to create is not under pressure, and deliveries to a
// cluster like that must not be held back. Slow stores, not busy ones, are the signal: an
// API server with room for both is never held back, however many callbacks arrive.
//
// The limit moves the way TCP's congestion window does, and for the same reason: a slow
// store halves the deliveries in flight, and each hold without one lets one more in. A
// limit that only switched between none and all would let every worker in at once when
// stores recover, slow them again, and answer Tencent in bursts of slow answers.
type Pressure struct {
	// Delay: a store that takes this much longer than usual makes fewer deliveries run at
	// once for a moment; 0 never does.
	Delay time.Duration

	usual recentMinimum

	mu       sync.Mutex
	inFlight int
	base     int       // the limit set by the last cut
	lastSlow time.Time // the limit grows from here, one per hold; zero: no limit yet
	lastCut  time.Time
	changed  chan struct{} // closed when a delivery ends; waiters then look again
}

// observe records how long a store took; one slower than usual by more than delay cuts
// the limit.
func (p *Pressure) observe(now time.Time, took, delay time.Duration) {
	if delay <= 0 {
		return
	}
	if took <= p.usual.add(now, took)+delay {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Slow stores come in bunches, all caused by the same deliveries: one cut per hold.
	if now.Sub(p.lastCut) >= pressureHold {
		p.base, p.lastCut = min(p.inFlight, p.limitAt(now))/2, now
	} else {
		p.base = p.limitAt(now) // the limit holds here until stores are fast again
	}
	p.lastSlow = now
}

// limitAt is how many deliveries may run at now: the last cut's level plus one for each
// hold since the last slow store. Callers hold p.mu.
func (p *Pressure) limitAt(now time.Time) int {
	if p.lastSlow.IsZero() {
		return math.MaxInt
	}
	// Capped so that the int conversion cannot overflow after a very long calm.
	return p.base + int(min(now.Sub(p.lastSlow)/pressureHold, math.MaxInt32))
}

// admit returns once a delivery may start, after maxWait at most (so that a long spell of
// slow stores slows deliveries down but never stops them), or when ctx ends. The
// delivery counts as in flight until it calls release.
func (p *Pressure) admit(ctx context.Context, maxWait time.Duration) (release func()) {
	deadline := time.Now().Add(maxWait)
	for {
		p.mu.Lock()
		now := time.Now()
		if p.inFlight < p.limitAt(now) || !now.Before(deadline) || ctx.Err() != nil {
			p.inFlight++
			p.mu.Unlock()
			return p.release
		}
		// Look again when a delivery ends, when the limit next grows, or at the deadline.
		if p.changed == nil {
			p.changed = make(chan struct{})
		}
		changed := p.changed
		nextGrowth := pressureHold - now.Sub(p.lastSlow)%pressureHold
		p.mu.Unlock()

		timer := time.NewTimer(min(nextGrowth, deadline.Sub(now)))
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
	}
}

func (p *Pressure) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
}

// recentMinimum is the least duration added in the current window and the one before.
type recentMinimum struct {
	mu                sync.Mutex
	windowStart       time.Time
	current, previous time.Duration // 0: nothing added in that window
}

// add records d at now and returns the recent minimum, d included.
func (m *recentMinimum) add(now time.Time, d time.Duration) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch elapsed := now.Sub(m.windowStart); {
	case elapsed >= 2*usualStoreWindow:
		m.previous, m.current, m.windowStart = 0, 0, now
	case elapsed >= usualStoreWindow:
		m.previous, m.current, m.windowStart = m.current, 0, m.windowStart.Add(usualStoreWindow)
	}
	if m.current == 0 || d < m.current {
		m.current = d
	}
	if m.previous != 0 && m.previous < m.current {
		return m.previous
	}
	return m.current
}

// ObserveStore records how long one of the webhook's stores took, until it was answered.
func (p *Pressure) ObserveStore(took time.Duration) {
	p.observe(time.Now(), took, p.Delay)
}

// AdmitDelivery lets a delivery give way to the webhook: while its stores are slower than
// usual by more than Delay, fewer deliveries run at once. It waits maxWait at most,
// reports how long it waited, and returns the release the delivery calls when it is done.
func (p *Pressure) AdmitDelivery(ctx context.Context, maxWait time.Duration) (release func(), waited time.Duration) {
	start := time.Now()
	release = p.admit(ctx, maxWait)
	return release, time.Since(start)
}
