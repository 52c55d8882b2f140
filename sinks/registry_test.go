package sinks

import (
	"context"
	"encoding/pem"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

type countingSink struct{ closed atomic.Int32 }

func (c *countingSink) Deliver(context.Context, *v1alpha1.OfficialAccountSubscription) error {
	return nil
}
func (c *countingSink) Close() error { c.closed.Add(1); return nil }

func TestRegistryReusesUntilTheFingerprintChanges(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
	builds := 0
	build := func() (Sink, error) { builds++; return &countingSink{}, nil }

	first, _ := r.Get(ctx, "ns/a", "gen1", build)
	again, _ := r.Get(ctx, "ns/a", "gen1", build)
	if first != again || builds != 1 {
		t.Fatalf("same fingerprint built %d times", builds)
	}
	second, _ := r.Get(ctx, "ns/a", "gen2", build)
	r.closing.Wait()
	if second == first || builds != 2 || first.(*countingSink).closed.Load() != 1 {
		t.Fatalf("a new fingerprint must rebuild and close the old sink (builds %d, closed %d)", builds, first.(*countingSink).closed.Load())
	}
	r.Forget("ns/a")
	r.closing.Wait()
	if second.(*countingSink).closed.Load() != 1 {
		t.Fatal("Forget did not close the sink")
	}
	if _, _ = r.Get(ctx, "ns/a", "gen2", build); builds != 3 {
		t.Fatal("a forgotten sink was not rebuilt")
	}
}

func TestRegistryCloseAllClosesEverySink(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
	var built []*countingSink
	build := func() (Sink, error) { s := &countingSink{}; built = append(built, s); return s, nil }
	_, _ = r.Get(ctx, "ns/a", "gen1", build)
	_, _ = r.Get(ctx, "ns/b", "gen1", build)
	r.CloseAll()
	for i, s := range built {
		if s.closed.Load() != 1 {
			t.Fatalf("sink %d closed %d times, want 1", i, s.closed.Load())
		}
	}
	if _, _ = r.Get(ctx, "ns/a", "gen1", build); len(built) != 3 {
		t.Fatal("a sink was still registered after CloseAll")
	}
}

func TestRegistryKeepsNoFailedBuild(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
	if _, err := r.Get(ctx, "ns/a", "gen1", func() (Sink, error) { return nil, errors.New("bad") }); err == nil {
		t.Fatal("the build's error was not returned")
	}
	s, err := r.Get(ctx, "ns/a", "gen1", func() (Sink, error) { return &countingSink{}, nil })
	if err != nil || s == nil {
		t.Fatalf("a failed build was kept: %v", err)
	}
}

// One sink that takes forever to build (a NATS server that does not answer its dial)
// must not hold up another sink's Get, nor a waiter whose context ends.
func TestRegistryASlowBuildBlocksOnlyItsOwnSink(t *testing.T) {
	ctx := context.Background()
	r := NewRegistry()
	unblock := make(chan struct{})
	building := make(chan struct{})
	go func() {
		_, _ = r.Get(ctx, "ns/slow", "gen1", func() (Sink, error) { close(building); <-unblock; return &countingSink{}, nil })
	}()
	<-building

	if _, err := r.Get(ctx, "ns/fast", "gen1", func() (Sink, error) { return &countingSink{}, nil }); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := r.Get(waitCtx, "ns/slow", "gen1", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a waiter for the slow build got %v, want its own deadline", err)
	}
	close(unblock)
	if s, err := r.Get(ctx, "ns/slow", "gen1", nil); err != nil || s == nil {
		t.Fatalf("the slow sink, once built, was not returned: %v", err)
	}
	r.CloseAll()
}
