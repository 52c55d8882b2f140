package delivery

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func ledgerEvent(uid types.UID, resourceVersion string, deliveries ...v1alpha1.SinkDelivery) *v1alpha1.OfficialAccountSubscription {
	sub := &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: "events", Name: "oasub-1", UID: uid,
		ResourceVersion: resourceVersion, Generation: 1}}
	if len(deliveries) > 0 {
		sub.Status.ObservedGeneration = 1
		sub.Status.Sinks = deliveries
	}
	return sub
}

func TestLedger(t *testing.T) {
	key := types.NamespacedName{Namespace: "events", Name: "oasub-1"}
	tests := []struct {
		name string
		run  func(t *testing.T, l *Ledger)
	}{
		{name: "a delivery in flight is not begun twice, and its outcome is kept until a status records it", run: func(t *testing.T, l *Ledger) {
			sub := ledgerEvent("u1", "1", pendingTo("a"))
			if !l.Begin(sub, "a", "", 0) || l.Begin(sub, "a", "", 0) {
				t.Fatal("Begin: want the first to begin and the second refused")
			}
			l.Finish(sub, deliveredTo("a", 1))
			if l.Begin(sub, "a", "", 0) {
				t.Fatal("begun again while an outcome newer than the plan waits to be written")
			}
			if got := l.View(sub).Outcomes["a"].Delivery.State; got != v1alpha1.DeliveryDelivered {
				t.Fatalf("kept outcome %q, want Delivered", got)
			}
			l.Observe(ledgerEvent("u1", "2", deliveredTo("a", 1)))
			if len(l.View(sub).Outcomes) != 0 || len(l.Unwritten()) != 0 {
				t.Fatal("an outcome the stored status records is still kept")
			}
		}},
		{name: "a written status makes older copies in the cache wait", run: func(t *testing.T, l *Ledger) {
			l.Written(ledgerEvent("u1", "5", pendingTo("a")))
			if got := l.Observe(ledgerEvent("u1", "4")); got != Behind {
				t.Fatalf("Observe of an older copy = %v, want Behind", got)
			}
			if got := l.Observe(ledgerEvent("u1", "5", pendingTo("a"))); got != Fresh {
				t.Fatalf("Observe of the written copy = %v, want Fresh", got)
			}
			if len(l.events) != 0 {
				t.Fatal("a record holding nothing is kept")
			}
		}},
		{name: "a deleted event is not planned from until the cache says NotFound", run: func(t *testing.T, l *Ledger) {
			sub := ledgerEvent("u1", "3")
			l.Deleted(sub)
			if got := l.Observe(sub); got != Deleted {
				t.Fatalf("Observe after the delete = %v, want Deleted", got)
			}
			if got := l.Observe(ledgerEvent("u2", "9")); got != Fresh {
				t.Fatalf("an event stored again under the name is %v, want Fresh", got)
			}
			l.Deleted(ledgerEvent("u2", "9"))
			l.Forget(key)
			if got := l.Observe(ledgerEvent("u2", "9")); got != Fresh {
				t.Fatalf("Observe after Forget = %v, want Fresh", got)
			}
		}},
		{name: "a retry voids the outcomes of the deliveries it starts over, and moves the others to its round", run: func(t *testing.T, l *Ledger) {
			sub := ledgerEvent("u1", "1", retryingAt("a", 2, time.Time{}), pendingTo("b"))
			l.Begin(sub, "a", "", 2)
			l.Finish(sub, failedAt("a", 3))
			l.Begin(sub, "b", "", 0)
			l.NewRound(sub, "r1", []string{"a"})
			if _, kept := l.View(sub).Outcomes["a"]; kept {
				t.Fatal("the failed outcome of the round before the retry is kept")
			}
			l.Finish(sub, deliveredTo("b", 1))
			if got := l.View(sub).Outcomes["b"]; got.Round != "r1" || got.Delivery.State != v1alpha1.DeliveryDelivered {
				t.Fatalf("the delivery in flight across the retry kept %+v, want Delivered in round r1", got)
			}
			if !l.Begin(sub, "a", "r1", 0) {
				t.Fatal("the delivery the retry started over could not begin")
			}
		}},
		{name: "a delivery in flight across a retry that reset it stays void after the retry's status is written", run: func(t *testing.T, l *Ledger) {
			sub := ledgerEvent("u1", "1", failedAt("a", 3))
			l.Begin(sub, "a", "", 2) // an attempt from before the reset, still running
			l.NewRound(sub, "r1", []string{"a"})
			written := ledgerEvent("u1", "2", pendingTo("a"))
			written.Status.LastHandledRetry = "r1"
			l.Written(written)
			l.Finish(sub, failedAt("a", 4))
			if len(l.View(sub).Outcomes) != 0 {
				t.Fatalf("the voided attempt's outcome was kept: %v", l.View(sub).Outcomes)
			}
		}},
		{name: "the end of a term forgets its tombstones, writes and deferrals, and keeps what is unwritten", run: func(t *testing.T, l *Ledger) {
			deleted := ledgerEvent("u1", "1")
			l.Deleted(deleted)
			deferred := ledgerEvent("u2", "1")
			deferred.Name = "oasub-2"
			l.Defer(deferred, time.Now(), []string{"a"})
			l.Begin(deferred, "a", "", 0)
			unwritten := ledgerEvent("u3", "1", pendingTo("a"))
			unwritten.Name = "oasub-3"
			l.Begin(unwritten, "a", "", 0)
			l.Finish(unwritten, deliveredTo("a", 1))
			l.Written(ledgerEvent("u3", "2"))
			l.EndTerm()
			if got := l.Observe(deleted); got != Fresh {
				t.Fatalf("the deleted event is %v after the term, want Fresh", got)
			}
			if v := l.View(deferred); !v.DeferredSince.IsZero() || len(v.InFlight) != 0 {
				t.Fatalf("the deferral outlived its term: %+v", v)
			}
			if keys := l.Unwritten(); len(keys) != 1 || keys[0].Name != "oasub-3" {
				t.Fatalf("unwritten %v, want the one outcome not written", keys)
			}
			if len(l.events) != 1 {
				t.Fatalf("%d records kept, want 1", len(l.events))
			}
		}},
		{name: "an abandoned delivery leaves nothing", run: func(t *testing.T, l *Ledger) {
			sub := ledgerEvent("u1", "1", pendingTo("a"))
			l.Begin(sub, "a", "", 0)
			l.Abandon(sub, "a")
			if len(l.events) != 0 {
				t.Fatal("an abandoned delivery left its record")
			}
		}},
		{name: "an event re-created under the same name does not inherit outcomes", run: func(t *testing.T, l *Ledger) {
			old := ledgerEvent("u1", "1", pendingTo("a"))
			l.Begin(old, "a", "", 0)
			l.Finish(old, deliveredTo("a", 1))
			if got := l.View(ledgerEvent("u2", "7")); len(got.Outcomes) != 0 {
				t.Fatalf("the new event sees %v", got.Outcomes)
			}
		}},
		{name: "a deferral keeps its first time and sinks until written", run: func(t *testing.T, l *Ledger) {
			sub := ledgerEvent("u1", "1")
			first := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
			l.Defer(sub, first, []string{"a"})
			l.Defer(sub, first.Add(time.Second), []string{"a", "b"})
			if v := l.View(sub); !v.DeferredSince.Equal(first) || len(v.DeferredSinks) != 1 {
				t.Fatalf("deferral %v %v, want the first", v.DeferredSince, v.DeferredSinks)
			}
			l.Written(ledgerEvent("u1", "2", pendingTo("a")))
			if !l.View(sub).DeferredSince.IsZero() {
				t.Fatal("the deferral outlived the write")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, &Ledger{}) })
	}
}
