package webhookserver

import (
	"context"
	"sync/atomic"
	"time"
)

// pressureHold is how long one slow store keeps deliveries waiting. Every slow store
// renews it, so deliveries stay paused while stores stay slow and resume a moment after.
const pressureHold = 100 * time.Millisecond

// storePressure tells deliveries when the webhook's stores are slow. The webhook and the
// reconciler share one API server. Storing an event cannot wait: Tencent gives up after
// 2 s and never retries. Delivering an event already stored loses nothing by starting a
// moment later. So when stores slow down, deliveries give way until they are fast again.
// Slow stores, not busy ones, are the signal: an API server with room for both is never
// held back, however many callbacks arrive.
type storePressure struct {
	slowUntil atomic.Int64 // UnixNano; deliveries wait until then
}

// observe records how long a store took; slower than threshold renews the pressure.
func (p *storePressure) observe(took, threshold time.Duration) {
	if threshold <= 0 || took <= threshold {
		return
	}
	until := time.Now().Add(pressureHold).UnixNano()
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

// WaitForStores lets a delivery give way to the webhook: while the webhook's stores are
// slower than Options.SlowStore it waits, maxWait at most, and reports how long it waited.
func (s *Server) WaitForStores(ctx context.Context, maxWait time.Duration) time.Duration {
	start := time.Now()
	s.pressure.wait(ctx, maxWait)
	return time.Since(start)
}
