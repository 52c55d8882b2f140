package webhookserver

import (
	"context"
	"testing"
	"time"
)

func TestStorePressure(t *testing.T) {
	const delay = 50 * time.Millisecond
	tests := []struct {
		name        string
		stores      []time.Duration // how long each store took, one after the other
		maxWait     time.Duration
		cancel      bool
		wantAtLeast time.Duration
		wantBelow   time.Duration
	}{
		{name: "no store yet: no wait", maxWait: time.Minute, wantBelow: pressureHold},
		{name: "fast stores: no wait", stores: []time.Duration{time.Millisecond, delay}, maxWait: time.Minute, wantBelow: pressureHold},
		{name: "a store slower than usual: wait out the hold", stores: []time.Duration{time.Millisecond, 2 * delay}, maxWait: time.Minute,
			wantAtLeast: pressureHold / 2, wantBelow: time.Minute},
		{name: "stores that are always slow are usual: no wait", stores: []time.Duration{4 * delay, 5 * delay, 4 * delay}, maxWait: time.Minute,
			wantBelow: pressureHold},
		{name: "slower than the usual slow time: wait", stores: []time.Duration{4 * delay, 6 * delay}, maxWait: time.Minute,
			wantAtLeast: pressureHold / 2, wantBelow: time.Minute},
		{name: "never longer than maxWait", stores: []time.Duration{time.Millisecond, time.Second}, maxWait: 10 * time.Millisecond,
			wantAtLeast: 10 * time.Millisecond, wantBelow: pressureHold},
		{name: "stops when the context ends", stores: []time.Duration{time.Millisecond, time.Second}, maxWait: time.Minute, cancel: true,
			wantBelow: pressureHold},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p storePressure
			for _, took := range tt.stores {
				p.observe(time.Now(), took, delay)
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

// A delay of 0 turns the pressure off, however slow the stores.
func TestStorePressureOff(t *testing.T) {
	var p storePressure
	now := time.Now()
	p.observe(now, time.Millisecond, 0)
	p.observe(now, time.Hour, 0)
	if p.slowUntil.Load() != 0 {
		t.Fatal("a store was counted as slow with the delay off")
	}
}

func TestRecentMinimum(t *testing.T) {
	const w = usualStoreWindow
	type sample struct {
		at   time.Duration // since the first sample
		d    time.Duration
		want time.Duration // the minimum add returns
	}
	tests := []struct {
		name    string
		samples []sample
	}{
		{name: "the least so far", samples: []sample{{0, 30, 30}, {1, 10, 10}, {2, 20, 10}}},
		{name: "kept through the next window", samples: []sample{{0, 10, 10}, {w + 1, 50, 10}, {2*w - 1, 40, 10}}},
		{name: "forgotten after two windows", samples: []sample{{0, 10, 10}, {w + 1, 50, 10}, {2*w + 1, 40, 40}}},
		{name: "forgotten after a long silence", samples: []sample{{0, 10, 10}, {5 * w, 40, 40}}},
		{name: "a faster store counts at once", samples: []sample{{0, 50, 50}, {w + 1, 60, 50}, {w + 2, 5, 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m recentMinimum
			start := time.Now()
			for i, s := range tt.samples {
				if got := m.add(start.Add(s.at), s.d); got != s.want {
					t.Fatalf("sample %d (%s at +%s): minimum %s, want %s", i, s.d, s.at, got, s.want)
				}
			}
		})
	}
}
