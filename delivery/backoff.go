package delivery

import (
	"time"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// Retry defaults, the same as the CRD's, for sinks stored without them.
const (
	defaultInitialInterval = time.Second
	defaultMaxInterval     = 5 * time.Minute
	defaultGiveUpAfter     = 24 * time.Hour
)

// retryPolicy is a SubscriptionSink's RetryPolicy with its defaults filled in.
type retryPolicy struct {
	initial, max, giveUpAfter time.Duration
	maxAttempts               int32 // 0: no limit
}

func retryPolicyOf(p v1alpha1.RetryPolicy) retryPolicy {
	rp := retryPolicy{initial: defaultInitialInterval, max: defaultMaxInterval, giveUpAfter: defaultGiveUpAfter}
	if p.InitialInterval != nil && p.InitialInterval.Duration > 0 {
		rp.initial = p.InitialInterval.Duration
	}
	if p.MaxInterval != nil && p.MaxInterval.Duration > 0 {
		rp.max = p.MaxInterval.Duration
	}
	if p.GiveUpAfter != nil && p.GiveUpAfter.Duration > 0 {
		rp.giveUpAfter = p.GiveUpAfter.Duration
	}
	if p.MaxAttempts != nil {
		rp.maxAttempts = *p.MaxAttempts
	}
	return rp
}

// nextAttemptDelay is the wait after the given number of failed attempts: the initial
// interval doubling each time up to the cap. A receiver's Retry-After is honoured when it
// asks for longer, up to the same cap.
func (p retryPolicy) nextAttemptDelay(attempts int32, retryAfter time.Duration) time.Duration {
	delay := p.initial
	for i := int32(1); i < attempts && delay < p.max; i++ {
		delay *= 2
	}
	delay = max(delay, min(retryAfter, p.max))
	return min(delay, p.max)
}

// exhausted reports whether a round that began at first has used up its attempts or its
// time.
func (p retryPolicy) exhausted(attempts int32, first, now time.Time) bool {
	if p.maxAttempts > 0 && attempts >= p.maxAttempts {
		return true
	}
	return now.Sub(first) >= p.giveUpAfter
}
