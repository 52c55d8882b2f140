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
	// Pace is the least time between two calls (default 50 ms: 20 calls/s, a tenth of the
	// limit, which other callers of the app share).
	Pace time.Duration
	// Attempts per page, the first included (default 6); Backoff is the wait before the
	// next one (default 500 ms doubling to 30 s, with jitter).
	Attempts int
	Backoff  func(attempt int) time.Duration
	// Scans of one account before its subscribers count as inconsistent (default 3).
	Scans int

	pace *rate.Limiter
}

// Scan is an Official Account's subscribers as one complete pass saw them.
type Scan struct {
	Subscribers   []Subscriber // each account once, in Tencent's order
	SubscriberNum int          // Tencent's count, from the last page
	Pages, Calls  int
}

// ErrInconsistent says the subscribers changed while they were being paged through, so
// that the pass cannot be trusted to have seen everyone.
var ErrInconsistent = errors.New("the subscribers changed while they were being listed")

// Subscribers scans an account until one pass sees as many subscribers as Tencent
// counts: paging is not documented to be consistent while subscribers change, and a
// subscriber missed would be taken for one who left.
func (s *Scanner) Subscribers(ctx context.Context, account string) (*Scan, error) {
	scans := s.Scans
	if scans <= 0 {
		scans = 3
	}
	calls := 0
	var last *Scan
	for range scans {
		scan, err := s.pass(ctx, account)
		if scan != nil {
			calls += scan.Calls
		}
		if err != nil {
			return nil, err
		}
		scan.Calls = calls
		if len(scan.Subscribers) == scan.SubscriberNum {
			return scan, nil
		}
		last = scan
	}
	return last, fmt.Errorf("%w: %d passes saw %d subscribers where Tencent counts %d", ErrInconsistent, scans,
		len(last.Subscribers), last.SubscriberNum)
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
	if s.pace == nil {
		pace := s.Pace
		if pace <= 0 {
			pace = 50 * time.Millisecond
		}
		s.pace = rate.NewLimiter(rate.Every(pace), 1)
	}
	return s.pace.Wait(ctx)
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
