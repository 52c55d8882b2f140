package webhookserver

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// pressureHold is how long one slow store keeps deliveries waiting. Every slow store
// renews it, so deliveries stay paused while stores stay slow and resume a moment after.
const pressureHold = 100 * time.Millisecond

// usualStoreWindow: a store's usual time is the fastest store of the current window and
// the one before, so the usual time follows an API server that became slower for good
// within two windows, and one that became faster at once.
const usualStoreWindow = 10 * time.Second

// storePressure tells deliveries when the webhook's stores are slow. The webhook and the
// reconciler share one API server. Storing an event cannot wait: Tencent gives up after
// 2 s and never retries. Delivering an event already stored loses nothing by starting a
// moment later. So when stores slow down, deliveries give way until they are fast again.
//
// Slow means slower than usual by more than a delay, not slower than a fixed time: an API
// server that always takes 40 ms to create is not under pressure, and deliveries to a
// cluster like that must not be held back. Slow stores, not busy ones, are the signal: an
// API server with room for both is never held back, however many callbacks arrive.
type storePressure struct {
	slowUntil atomic.Int64 // UnixNano; deliveries wait until then
	usual     recentMinimum
}

// observe records how long a store took; one slower than usual by more than delay renews
// the pressure.
func (p *storePressure) observe(now time.Time, took, delay time.Duration) {
	if delay <= 0 {
		return
	}
	if took <= p.usual.add(now, took)+delay {
		return
	}
	until := now.Add(pressureHold).UnixNano()
	for {
		current := p.slowUntil.Load()
		if current >= until || p.slowUntil.CompareAndSwap(current, until) {
			return
		}
	}
}

// wait returns once stores are no longer slow, after maxWait at most (so that a long
// spell of slow stores slows deliveries down but never stops them), or when ctx ends.
func (p *storePressure) wait(ctx context.Context, maxWait time.Duration) {
	deadline := time.Now().Add(maxWait)
	for {
		until := time.Unix(0, p.slowUntil.Load())
		if until.After(deadline) {
			until = deadline
		}
		pause := time.Until(until)
		if pause <= 0 {
			return
		}
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return
		}
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

// WaitForStores lets a delivery give way to the webhook: while the webhook's stores are
// slower than usual by more than Options.SlowStoreDelay it waits, maxWait at most, and
// reports how long it waited.
func (s *Server) WaitForStores(ctx context.Context, maxWait time.Duration) time.Duration {
	start := time.Now()
	s.pressure.wait(ctx, maxWait)
	return time.Since(start)
}
