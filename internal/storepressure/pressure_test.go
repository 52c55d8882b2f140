package storepressure

import (
	"cmp"
	"context"
	"math"
	"testing"
	"time"
)

// The limit on deliveries in flight, step by step: halved by a slow store, at most once
// per hold, and one more for each hold without a slow store.
func TestDeliveryLimit(t *testing.T) {
	const (
		delay = 50 * time.Millisecond
		fast  = time.Millisecond
		slow  = time.Second
		hold  = pressureHold
	)
	type step struct {
		at        time.Duration // since the first step
		inFlight  int
		store     time.Duration // a store that took this long ends at at; 0: none
		wantLimit int
	}
	tests := []struct {
		name  string
		usual time.Duration // the store before the first step; fast unless set
		steps []step
	}{
		{name: "no limit while stores are fast", steps: []step{
			{at: 0, inFlight: 8, store: fast, wantLimit: math.MaxInt},
			{at: time.Second, inFlight: 8, store: delay, wantLimit: math.MaxInt}}},
		{name: "a slow store halves the deliveries in flight", steps: []step{
			{at: 1, inFlight: 8, store: slow, wantLimit: 4}}},
		{name: "one cut per hold: slow stores come in bunches", steps: []step{
			{at: 1, inFlight: 8, store: slow, wantLimit: 4},
			{at: hold / 2, inFlight: 8, store: slow, wantLimit: 4},
			{at: hold + hold/2, inFlight: 4, store: slow, wantLimit: 2}}},
		{name: "cut from what runs, not from the limit", steps: []step{
			{at: 1, inFlight: 2, store: slow, wantLimit: 1}}},
		{name: "down to none while stores stay slow", steps: []step{
			{at: 1, inFlight: 1, store: slow, wantLimit: 0},
			{at: hold / 2, inFlight: 1, wantLimit: 0}}},
		{name: "one more per hold after the last slow store", steps: []step{
			{at: 1, inFlight: 8, store: slow, wantLimit: 4},
			{at: 1 + hold, inFlight: 4, wantLimit: 5},
			{at: 1 + 3*hold, inFlight: 5, wantLimit: 7}}},
		{name: "a slow store stops the growth", steps: []step{
			{at: 1, inFlight: 2, store: slow, wantLimit: 1},
			{at: 1 + 3*hold, inFlight: 4, store: slow, wantLimit: 2},
			{at: 1 + 3*hold + hold/2, inFlight: 2, wantLimit: 2}}},
		{name: "stores that are always slow are usual: no limit", usual: 4 * delay, steps: []step{
			{at: 1, inFlight: 8, store: 5 * delay, wantLimit: math.MaxInt}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Pressure
			start := time.Now()
			p.observe(start, cmp.Or(tt.usual, fast), delay)
			for i, s := range tt.steps {
				now := start.Add(s.at)
				p.inFlight = s.inFlight
				if s.store > 0 {
					p.observe(now, s.store, delay)
				}
				if got := p.limitAt(now); got != s.wantLimit {
					t.Fatalf("step %d: limit %d, want %d", i, got, s.wantLimit)
				}
			}
		})
	}
}

// admit waits for a turn under the limit, maxWait at most.
func TestAdmitDelivery(t *testing.T) {
	const delay = 50 * time.Millisecond
	tests := []struct {
		name        string
		slowStore   bool // a slow store just now, with no delivery in flight: the limit is 0
		maxWait     time.Duration
		cancel      bool
		wantAtLeast time.Duration
		wantBelow   time.Duration
	}{
		{name: "no slow store: no wait", maxWait: time.Minute, wantBelow: pressureHold / 2},
		{name: "after a slow store: wait until the limit grows", slowStore: true, maxWait: time.Minute,
			wantAtLeast: pressureHold / 2, wantBelow: 2 * pressureHold},
		{name: "never longer than maxWait", slowStore: true, maxWait: 10 * time.Millisecond,
			wantAtLeast: 10 * time.Millisecond, wantBelow: pressureHold / 2},
		{name: "stops when the context ends", slowStore: true, maxWait: time.Minute, cancel: true,
			wantBelow: pressureHold / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Pressure
			p.observe(time.Now(), time.Millisecond, delay)
			if tt.slowStore {
				p.observe(time.Now(), time.Second, delay)
			}
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancel {
				cancel()
			}
			defer cancel()
			start := time.Now()
			release := p.admit(ctx, tt.maxWait)
			waited := time.Since(start)
			release()
			if waited < tt.wantAtLeast || waited >= tt.wantBelow {
				t.Fatalf("waited %s, want at least %s and below %s", waited, tt.wantAtLeast, tt.wantBelow)
			}
			if p.inFlight != 0 {
				t.Fatalf("%d deliveries in flight after the release", p.inFlight)
			}
		})
	}
}

// A delivery that ends lets a waiting one in at once, without waiting for the limit to
// grow: without the release's wake-up, the waiter would look again only when the limit
// grows, a hold after the slow store.
func TestAReleaseLetsAWaitingDeliveryIn(t *testing.T) {
	var p Pressure
	p.observe(time.Now(), time.Millisecond, time.Millisecond)
	first := p.admit(context.Background(), 0)
	second := p.admit(context.Background(), 0)
	slowAt := time.Now()
	p.observe(slowAt, time.Second, time.Millisecond) // 2 in flight: the limit is 1
	admitted := make(chan time.Time, 1)
	go func() {
		release := p.admit(context.Background(), time.Minute)
		admitted <- time.Now()
		release()
	}()
	time.Sleep(pressureHold / 10)
	first()
	second()
	if at := <-admitted; !at.Before(slowAt.Add(pressureHold)) {
		t.Fatalf("admitted %s after the slow store, when the limit grew; want when the deliveries ended", at.Sub(slowAt))
	}
}

// A delay of 0 turns the limit off, however slow the stores.
func TestStorePressureOff(t *testing.T) {
	var p Pressure
	now := time.Now()
	p.observe(now, time.Millisecond, 0)
	p.observe(now, time.Hour, 0)
	if got := p.limitAt(now); got != math.MaxInt {
		t.Fatalf("limit %d with the delay off, want none", got)
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

// A store slower than usual by more than Delay (200 ms after stores that took a
// millisecond) makes the next delivery give way for about a hold; with Delay at 0
// deliveries never wait.
func TestASlowStoreMakesDeliveriesGiveWay(t *testing.T) {
	for _, delay := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run("Delay="+delay.String(), func(t *testing.T) {
			p := &Pressure{Delay: delay}
			p.ObserveStore(time.Millisecond) // the usual store
			release, waited := p.AdmitDelivery(context.Background(), time.Minute)
			release()
			if waited >= pressureHold {
				t.Fatalf("waited %s before a slow store", waited)
			}
			p.ObserveStore(200 * time.Millisecond)
			release, waited = p.AdmitDelivery(context.Background(), time.Minute)
			release()
			switch {
			case delay == 0 && waited >= pressureHold:
				t.Fatalf("waited %s with the yielding off", waited)
			case delay > 0 && (waited < pressureHold/2 || waited >= time.Minute):
				t.Fatalf("waited %s after a 200 ms store, want about %s", waited, pressureHold)
			}
		})
	}
}
