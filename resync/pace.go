package resync

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/chat-operators/officialaccount-operator/tencent"
)

// appPaces hands every scanner of one SDKAppID the same limiter: Tencent counts an app's
// calls together, so several resyncs of one app must not add up their paces.
type appPaces struct {
	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

func (p *appPaces) of(sdkAppID string, pace time.Duration) *rate.Limiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limiters == nil {
		p.limiters = map[string]*rate.Limiter{}
	}
	l, ok := p.limiters[sdkAppID]
	if !ok {
		l = tencent.NewLimiter(pace)
		p.limiters[sdkAppID] = l
	}
	return l
}
