package delivery

import (
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

func breakerSpec(failures int32, probe, maxProbe time.Duration) v1alpha1.CircuitBreaker {
	return v1alpha1.CircuitBreaker{ConsecutiveFailures: &failures,
		ProbeInterval: &metav1.Duration{Duration: probe}, MaxProbeInterval: &metav1.Duration{Duration: maxProbe}}
}

var (
	errDown     = errors.New("connection refused")
	errRejected = sinks.Permanent(errors.New("400 Bad Request"))
)

func TestBreakerOpensAfterConsecutiveSinkFailuresOnly(t *testing.T) {
	tests := []struct {
		name     string
		outcomes []error
		open     bool
	}{
		{"five failures in a row open it", []error{errDown, errDown, errDown, errDown, errDown}, true},
		{"four do not", []error{errDown, errDown, errDown, errDown}, false},
		{"a success between starts the count again", []error{errDown, errDown, errDown, nil, errDown, errDown}, false},
		{"an event's rejection is no failure of the sink's, and resets the count",
			[]error{errDown, errDown, errRejected, errDown, errDown, errDown}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Breakers
			defer b.Stop()
			spec := breakerSpec(5, time.Hour, time.Hour)
			for _, err := range tt.outcomes {
				b.Record("ns/s", spec, false, err, planNow)
			}
			if got := b.View("ns/s").Open; got != tt.open {
				t.Fatalf("open %v, want %v", got, tt.open)
			}
		})
	}
}

// While open, one probe is admitted once due, and no other attempt; failed probes double
// the wait up to the cap; a probe the sink answers closes the circuit.
func TestBreakerProbesOnADoublingScheduleAndClosesOnAnAnswer(t *testing.T) {
	var b Breakers
	defer b.Stop()
	spec := breakerSpec(2, 10*time.Second, 25*time.Second)
	now := planNow
	b.Record("ns/s", spec, false, errDown, now)
	if tr := b.Record("ns/s", spec, false, errDown, now); tr != Opened {
		t.Fatalf("transition %v, want Opened", tr)
	}
	var gaps []time.Duration
	for range 4 {
		next := b.View("ns/s").NextProbe
		gaps = append(gaps, next.Sub(now))
		if ok, _ := b.Admit("ns/s", spec, next.Add(-time.Millisecond)); ok || b.Circuit("ns/s", spec, next.Add(-time.Millisecond)) != Holding {
			t.Fatal("a delivery was admitted before the probe was due")
		}
		now = next
		if b.Circuit("ns/s", spec, now) != Probing {
			t.Fatal("the due probe's delivery is held")
		}
		ok, probe := b.Admit("ns/s", spec, now)
		if !ok || !probe {
			t.Fatalf("the due probe: admitted %v probe %v", ok, probe)
		}
		if again, _ := b.Admit("ns/s", spec, now); again {
			t.Fatal("a second delivery was admitted while the probe is under way")
		}
		b.Record("ns/s", spec, true, errDown, now)
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second, 25 * time.Second}
	for i := range want {
		if gaps[i] != want[i] {
			t.Fatalf("probe gaps %v, want %v", gaps, want)
		}
	}
	now = b.View("ns/s").NextProbe
	b.Admit("ns/s", spec, now)
	if tr := b.Record("ns/s", spec, true, errRejected, now); tr != Closed {
		t.Fatalf("a probe the sink answered (with a rejection): transition %v, want Closed", tr)
	}
	if v := b.View("ns/s"); v.Open || v.Trips != 1 {
		t.Fatalf("after the probe: %+v, want closed after 1 trip", v)
	}
	if ok, probe := b.Admit("ns/s", spec, now); !ok || probe {
		t.Fatal("a closed circuit holds deliveries")
	}
}

// consecutiveFailures: 0 turns the breaker off, and closes a circuit open before.
func TestBreakerOff(t *testing.T) {
	var b Breakers
	defer b.Stop()
	on, off := breakerSpec(1, time.Hour, time.Hour), breakerSpec(0, time.Hour, time.Hour)
	for range 10 {
		b.Record("ns/off", off, false, errDown, planNow)
	}
	if b.View("ns/off").Open {
		t.Fatal("a breaker turned off opened")
	}
	b.Record("ns/on", on, false, errDown, planNow)
	if b.Circuit("ns/on", on, planNow) != Holding {
		t.Fatal("the circuit did not open")
	}
	if b.Circuit("ns/on", off, planNow) != Flowing || b.View("ns/on").Open {
		t.Fatal("turning the breaker off left the circuit open")
	}
}

// An open circuit whose probe is due wakes a held delivery, and wakes one again while no
// probe was admitted.
func TestBreakerWakesAProbe(t *testing.T) {
	woken := make(chan string, 10)
	b := Breakers{ProbeDue: func(sink string) { woken <- sink }}
	defer b.Stop()
	spec := breakerSpec(1, time.Millisecond, time.Millisecond)
	b.Record("ns/s", spec, false, errDown, time.Now())
	for range 2 {
		select {
		case sink := <-woken:
			if sink != "ns/s" {
				t.Fatalf("woke %q", sink)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no probe was woken")
		}
	}
}

// Deliveries that end after the term is over open no circuit: its probe timer would
// outlive the term.
func TestBreakerStoppedOpensNothing(t *testing.T) {
	var b Breakers
	b.Stop()
	spec := breakerSpec(1, time.Hour, time.Hour)
	if tr := b.Record("ns/s", spec, false, errDown, planNow); tr != Unchanged || b.View("ns/s").Known {
		t.Fatalf("after Stop: transition %v, view %+v; want nothing recorded", tr, b.View("ns/s"))
	}
}
