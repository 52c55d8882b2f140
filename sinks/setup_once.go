package sinks

import (
	"context"
	"fmt"
	"sync/atomic"
)

// setupOnce runs a sink's setup (creating its tables) until it succeeds once. One caller
// runs it at a time; the others wait for that caller, each no longer than its own deadline,
// so that a database that hangs on the setup holds every delivery only as long as its own
// timeout. A setup that fails is tried again by the next caller.
type setupOnce struct {
	running chan struct{}
	done    atomic.Bool
}

func newSetupOnce() *setupOnce {
	return &setupOnce{running: make(chan struct{}, 1)}
}

// Do runs setup unless it has succeeded before; what names it in the error of a caller
// that gave up waiting.
func (s *setupOnce) Do(ctx context.Context, what string, setup func(context.Context) error) error {
	if s.done.Load() {
		return nil
	}
	select {
	case s.running <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
	}
	defer func() { <-s.running }()
	if s.done.Load() {
		return nil
	}
	if err := setup(ctx); err != nil {
		return err
	}
	s.done.Store(true)
	return nil
}
