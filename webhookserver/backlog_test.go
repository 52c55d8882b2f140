package webhookserver

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chat-operators/officialaccount-operator/internal/backlog"
)

func TestBacklogGate(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		max    int
		stores []time.Time     // this replica's stores
		counts []backlog.Count // the leader's counts, read after the stores
		want   int             // the estimate
		admit  bool
	}{
		{name: "no limit", max: 0, stores: []time.Time{t0, t0}, admit: true},
		{name: "below the limit", max: 3, stores: []time.Time{t0, t0}, want: 2, admit: true},
		{name: "at the limit before any count", max: 2, stores: []time.Time{t0, t0}, want: 2},
		{name: "the leader's count replaces the stores it includes", max: 10,
			stores: []time.Time{t0, t0.Add(5 * time.Second)}, counts: []backlog.Count{{Pending: 7, CountedAt: t0.Add(3 * time.Second)}},
			want: 8, admit: true},
		{name: "a store just before the count is counted again rather than lost", max: 10,
			stores: []time.Time{t0.Add(2500 * time.Millisecond)}, counts: []backlog.Count{{Pending: 7, CountedAt: t0.Add(3 * time.Second)}},
			want: 8, admit: true},
		{name: "deliveries caught up: the gate opens again", max: 5,
			stores: []time.Time{t0, t0, t0, t0, t0}, counts: []backlog.Count{{Pending: 1, CountedAt: t0.Add(time.Minute)}},
			want: 1, admit: true},
		{name: "an older count does not replace a newer one", max: 5,
			counts: []backlog.Count{{Pending: 5, CountedAt: t0.Add(time.Minute)}, {Pending: 0, CountedAt: t0}}, want: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &backlogGate{max: tt.max}
			for _, at := range tt.stores {
				g.stored(at)
			}
			for _, c := range tt.counts {
				g.update(c)
			}
			if got := g.counted.Pending + len(g.storedSince); tt.max > 0 && got != tt.want {
				t.Errorf("estimate %d, want %d", got, tt.want)
			}
			err := g.admit()
			if (err == nil) != tt.admit {
				t.Fatalf("admit = %v, want admitted %v", err, tt.admit)
			}
			if err != nil && (err.status != http.StatusServiceUnavailable || !strings.Contains(err.info, "--max-pending-events")) {
				t.Fatalf("refusal %d %q does not name the limit", err.status, err.info)
			}
		})
	}
}
