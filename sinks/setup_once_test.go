package sinks

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestSetupOnceRunsUntilItSucceeds(t *testing.T) {
	failing := errors.New("the database refused")
	tests := []struct {
		name      string
		results   []error // what each run of the setup returns, in turn
		calls     int
		wantRuns  int
		wantLastE error
	}{
		{name: "a success is not run again", results: []error{nil}, calls: 3, wantRuns: 1},
		{name: "a failure is tried again by the next caller", results: []error{failing, nil}, calls: 3, wantRuns: 2},
		{name: "failures go on being tried", results: []error{failing, failing, failing}, calls: 3, wantRuns: 3, wantLastE: failing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSetupOnce()
			runs := 0
			var err error
			for range tt.calls {
				err = s.Do(context.Background(), "the tables", func(context.Context) error {
					runs++
					return tt.results[runs-1]
				})
			}
			if runs != tt.wantRuns || !errors.Is(err, tt.wantLastE) {
				t.Fatalf("ran %d times, last error %v; want %d and %v", runs, err, tt.wantRuns, tt.wantLastE)
			}
		})
	}
}

func TestSetupOnceRunsOnceForCallersAtOnce(t *testing.T) {
	const callers = 16
	s := newSetupOnce()
	var runs, arrived atomic.Int32
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			arrived.Add(1)
			if err := s.Do(context.Background(), "the tables", func(context.Context) error {
				// The setup lasts until every caller has come, so that the others wait
				// for it rather than find it done.
				for arrived.Load() < callers {
					runtime.Gosched()
				}
				runs.Add(1)
				return nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("the setup ran %d times for 16 callers at once, want 1", n)
	}
}

// A caller waiting behind a setup that hangs leaves at its own deadline, not the setup's.
func TestSetupOnceWaiterLeavesAtItsDeadline(t *testing.T) {
	s := newSetupOnce()
	started, release := make(chan struct{}), make(chan struct{})
	holderDone := make(chan error, 1)
	go func() {
		holderDone <- s.Do(context.Background(), "the tables", func(context.Context) error {
			close(started)
			<-release // a database that does not answer
			return nil
		})
	}()
	<-started

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the waiter's deadline has passed
	ranByWaiter := false
	err := s.Do(ctx, "the tables", func(context.Context) error { ranByWaiter = true; return nil })
	if !errors.Is(err, context.Canceled) || ranByWaiter {
		t.Fatalf("a waiter past its deadline returned %v (ran the setup: %v), want context.Canceled", err, ranByWaiter)
	}

	close(release)
	if err := <-holderDone; err != nil {
		t.Fatalf("the setup that was let go failed: %v", err)
	}
}
