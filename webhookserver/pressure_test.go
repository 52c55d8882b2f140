package webhookserver

import (
	"context"
	"testing"
	"time"
)

func TestStorePressure(t *testing.T) {
	const threshold = 50 * time.Millisecond
	tests := []struct {
		name        string
		stores      []time.Duration // how long each store took
		maxWait     time.Duration
		cancel      bool
		wantAtLeast time.Duration
		wantBelow   time.Duration
	}{
		{name: "no store yet: no wait", maxWait: time.Minute, wantBelow: pressureHold},
		{name: "fast stores: no wait", stores: []time.Duration{time.Millisecond, threshold}, maxWait: time.Minute, wantBelow: pressureHold},
		{name: "a slow store: wait out the hold", stores: []time.Duration{time.Millisecond, 2 * threshold}, maxWait: time.Minute,
			wantAtLeast: pressureHold / 2, wantBelow: time.Minute},
		{name: "never longer than maxWait", stores: []time.Duration{time.Second}, maxWait: 10 * time.Millisecond,
			wantAtLeast: 10 * time.Millisecond, wantBelow: pressureHold},
		{name: "stops when the context ends", stores: []time.Duration{time.Second}, maxWait: time.Minute, cancel: true,
			wantBelow: pressureHold},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p storePressure
			for _, took := range tt.stores {
				p.observe(took, threshold)
			}
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancel {
				cancel()
			}
			defer cancel()
			start := time.Now()
			p.wait(ctx, tt.maxWait)
			waited := time.Since(start)
			if waited < tt.wantAtLeast || waited >= tt.wantBelow {
				t.Fatalf("waited %s, want at least %s and below %s", waited, tt.wantAtLeast, tt.wantBelow)
			}
		})
	}
}

// A threshold of 0 turns the pressure off, however slow the stores.
func TestStorePressureOff(t *testing.T) {
	var p storePressure
	p.observe(time.Hour, 0)
	if p.slowUntil.Load() != 0 {
		t.Fatal("a store was counted as slow with the threshold off")
	}
}
