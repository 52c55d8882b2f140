package tencent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/time/rate"
)

// Scanner pages through an Official Account's subscribers, paced well under Tencent's
// limit of 200 calls per second, retrying what a later call may pass.
type Scanner struct {
	Client *Client
	// Limiter paces the calls; share one between every scanner of an app, whose calls
	// Tencent counts together. Nil: one of its own at DefaultPace.
	Limiter *rate.Limiter
	// Attempts per page, the first included (default 6); Backoff is the wait before the
	// next one (default 500 ms doubling to 30 s, with jitter).
	Attempts int
	Backoff  func(attempt int) time.Duration
	// Passes over the account (default 2): a member is listed if any pass saw them.
	Passes int
}

// DefaultPace is the least time between two calls of one app: 20 calls/s, a tenth of
// Tencent's limit, which the app's other callers share.
const DefaultPace = 50 * time.Millisecond

// NewLimiter paces calls at most one per pace (DefaultPace when 0).
func NewLimiter(pace time.Duration) *rate.Limiter {
	if pace <= 0 {
		pace = DefaultPace
	}
	return rate.NewLimiter(rate.Every(pace), 1)
}

// Scan is an Official Account's subscribers as the scanner's passes saw them.
type Scan struct {
	Subscribers   []Subscriber // each account once, in the order first seen
	SubscriberNum int          // Tencent's count, from the last page
	Pages, Calls  int
}

// Subscribers lists an account's subscribers in two passes and keeps every member that
// either saw. Paging is not documented to be consistent while subscribers change, and a
// member missing from a listing is taken for one who left, so a member's absence is
// trusted only when both passes agree on it. Tencent's count cannot tell: a member who
// joined during a pass and one it missed cancel out. A member who left during the
// listing may be kept; their Unsubscribe callback is newer than the snapshot and wins,
// or the next resync sees them gone.
func (s *Scanner) Subscribers(ctx context.Context, account string) (*Scan, error) {
	passes := s.Passes
	if passes <= 0 {
		passes = 2
	}
	union := &Scan{}
	seen := map[string]bool{}
	for range passes {
		scan, err := s.pass(ctx, account)
		union.Calls += scan.Calls
		union.Pages += scan.Pages
		if err != nil {
			return union, err
		}
		union.SubscriberNum = scan.SubscriberNum
		for _, sub := range scan.Subscribers {
			if !seen[sub.Account] {
				seen[sub.Account] = true
				union.Subscribers = append(union.Subscribers, sub)
			}
		}
	}
	return union, nil
}

// pass pages through once, following Next until it is "".
func (s *Scanner) pass(ctx context.Context, account string) (*Scan, error) {
	scan := &Scan{}
	seen := map[string]bool{}
	next := ""
	for {
		page, calls, err := s.page(ctx, account, next)
		scan.Calls += calls
		if err != nil {
			return scan, err
		}
		scan.Pages++
		scan.SubscriberNum = page.SubscriberNum
		for _, sub := range page.Subscribers {
			if !seen[sub.Account] {
				seen[sub.Account] = true
				scan.Subscribers = append(scan.Subscribers, sub)
			}
		}
		if page.Next == "" {
			return scan, nil
		}
		if page.Next == next {
			return scan, fmt.Errorf("get_subscriber_info answered the same Next twice")
		}
		next = page.Next
	}
}

// page fetches one page, retrying frequency limits, internal and transport errors with
// backoff, and an expired UserSig once with a new one.
func (s *Scanner) page(ctx context.Context, account, next string) (*SubscriberPage, int, error) {
	attempts := s.Attempts
	if attempts <= 0 {
		attempts = 6
	}
	var err error
	for attempt := 1; attempt <= attempts; attempt++ {
		if err := s.waitTurn(ctx); err != nil {
			return nil, attempt - 1, err
		}
		var page *SubscriberPage
		if page, err = s.Client.SubscriberPage(ctx, account, next); err == nil {
			return page, attempt, nil
		}
		var tencentErr *Error
		switch {
		case errors.As(err, &tencentErr) && tencentErr.UserSigExpired() && attempt == 1:
			s.Client.forgetUserSig()
			continue
		case errors.As(err, &tencentErr) && !tencentErr.Retryable():
			return nil, attempt, err
		case ctx.Err() != nil:
			return nil, attempt, ctx.Err()
		}
		if attempt < attempts {
			if err := sleep(ctx, s.backoff(attempt)); err != nil {
				return nil, attempt, err
			}
		}
	}
	return nil, attempts, fmt.Errorf("gave up after %d attempts: %w", attempts, err)
}

// waitTurn waits until the pace allows the next call.
func (s *Scanner) waitTurn(ctx context.Context) error {
	if s.Limiter == nil {
		s.Limiter = NewLimiter(0)
	}
	return s.Limiter.Wait(ctx)
}

func (s *Scanner) backoff(attempt int) time.Duration {
	if s.Backoff != nil {
		return s.Backoff(attempt)
	}
	d := min(500*time.Millisecond<<(attempt-1), 30*time.Second)
	return d/2 + rand.N(d/2+1) // jitter: callers that backed off together do not return together
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
