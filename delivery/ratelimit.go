package delivery

import (
	"context"
	"sync"

	"golang.org/x/time/rate"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// RateLimits keep a token bucket per sink that has a rateLimit: a delivery waits for its
// token when its turn in the lane comes, so that a backlog draining after an outage
// reaches a service that has just recovered at the pace its owner chose, not at
// maxInFlight all at once. The zero value is ready.
type RateLimits struct {
	mu     sync.Mutex
	bySink map[string]*rate.Limiter // by namespace/name
}

// Wait blocks until a delivery to the sink may start under its limit, or ctx ends. A sink
// without a limit never waits.
func (r *RateLimits) Wait(ctx context.Context, sink string, limit *v1alpha1.RateLimit) error {
	limiter := r.limiter(sink, limit)
	if limiter == nil {
		return nil
	}
	return limiter.Wait(ctx)
}

// limiter returns the sink's bucket, made or changed to match its spec; nil without one.
func (r *RateLimits) limiter(sink string, limit *v1alpha1.RateLimit) *rate.Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if limit == nil || limit.PerSecond < 1 {
		delete(r.bySink, sink)
		return nil
	}
	perSecond, burst := rate.Limit(limit.PerSecond), int(limit.PerSecond)
	if limit.Burst != nil && *limit.Burst > 0 {
		burst = int(*limit.Burst)
	}
	l := r.bySink[sink]
	switch {
	case l == nil:
		if r.bySink == nil {
			r.bySink = map[string]*rate.Limiter{}
		}
		l = rate.NewLimiter(perSecond, burst)
		r.bySink[sink] = l
	case l.Limit() != perSecond || l.Burst() != burst:
		l.SetLimit(perSecond)
		l.SetBurst(burst)
	}
	return l
}

// Forget drops a deleted sink's bucket.
func (r *RateLimits) Forget(sink string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.bySink, sink)
}
