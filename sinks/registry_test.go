package sinks

import (
	"context"
	"encoding/pem"
	"testing"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

type countingSink struct{ closed int }

func (c *countingSink) Deliver(context.Context, *v1alpha1.OfficialAccountSubscription) error {
	return nil
}
func (c *countingSink) Close() error { c.closed++; return nil }

func TestRegistryReusesUntilTheFingerprintChanges(t *testing.T) {
	r := NewRegistry()
	builds := 0
	build := func() (Sink, error) { builds++; return &countingSink{}, nil }

	first, _ := r.Get("ns/a", "gen1", build)
	again, _ := r.Get("ns/a", "gen1", build)
	if first != again || builds != 1 {
		t.Fatalf("same fingerprint built %d times", builds)
	}
	second, _ := r.Get("ns/a", "gen2", build)
	if second == first || builds != 2 || first.(*countingSink).closed != 1 {
		t.Fatalf("a new fingerprint must rebuild and close the old sink (builds %d, closed %d)", builds, first.(*countingSink).closed)
	}
	r.Forget("ns/a")
	if second.(*countingSink).closed != 1 {
		t.Fatal("Forget did not close the sink")
	}
	if _, _ = r.Get("ns/a", "gen2", build); builds != 3 {
		t.Fatal("a forgotten sink was not rebuilt")
	}
}

func TestRegistryCloseAllClosesEverySink(t *testing.T) {
	r := NewRegistry()
	var built []*countingSink
	build := func() (Sink, error) { s := &countingSink{}; built = append(built, s); return s, nil }
	_, _ = r.Get("ns/a", "gen1", build)
	_, _ = r.Get("ns/b", "gen1", build)
	r.CloseAll()
	for i, s := range built {
		if s.closed != 1 {
			t.Fatalf("sink %d closed %d times, want 1", i, s.closed)
		}
	}
	if _, _ = r.Get("ns/a", "gen1", build); len(built) != 3 {
		t.Fatal("a sink was still registered after CloseAll")
	}
}
