package faults

import (
	"context"
	"net/http"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// The replay specs run here, each with an operator of its own, because they need delivered
// events kept for longer than a spec lasts (--delivered-retention=1h); the controllers
// suite's operator keeps them 10 s.

// replayEventTime is the event time of the replay specs' event i: one second apart.
func replayEventTime(i int) int64 { return 1_700_000_000_000 + int64(i)*1000 }

// newReplay creates a replay of the namespace's events to the sink.
func newReplay(ns, name, sink string, mutate ...func(*v1alpha1.SubscriptionReplay)) *v1alpha1.SubscriptionReplay {
	GinkgoHelper()
	replay := &v1alpha1.SubscriptionReplay{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.SubscriptionReplaySpec{SinkName: sink}}
	for _, m := range mutate {
		m(replay)
	}
	Expect(k8s.Create(context.Background(), replay)).To(Succeed())
	return replay
}

// replayNow is the replay as the API server has it.
func replayNow(replay *v1alpha1.SubscriptionReplay) *v1alpha1.SubscriptionReplay {
	GinkgoHelper()
	var got v1alpha1.SubscriptionReplay
	Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(replay), &got)).To(Succeed())
	return &got
}

// replayReason is the reason of the replay's Ready condition once it observed its spec.
func replayReason(replay *v1alpha1.SubscriptionReplay) func() string {
	return func() string {
		got := replayNow(replay)
		ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
		if ready == nil || got.Status.ObservedGeneration != got.Generation {
			return ""
		}
		return ready.Reason
	}
}

// labelledBy counts the namespace's events the replay selected.
func labelledBy(ns string, replay string) int {
	GinkgoHelper()
	var list v1alpha1.OfficialAccountSubscriptionList
	Expect(k8s.List(context.Background(), &list, client.InNamespace(ns), client.HasLabels{v1alpha1.ReplayLabel(replay)})).To(Succeed())
	return len(list.Items)
}

// settled waits until n of the namespace's events have ended their delivery to the sink.
func settled(ns, sink string, n int) {
	GinkgoHelper()
	Eventually(func() int {
		done := 0
		for _, ev := range eventsOf(ns) {
			for _, d := range ev.Status.Sinks {
				if d.Name == sink && d.State != v1alpha1.DeliveryPending {
					done++
				}
			}
		}
		return done
	}, 2*time.Minute, 200*time.Millisecond).Should(Equal(n))
}

var _ = Describe("A SubscriptionReplay", func() {
	It("previews the exact count of its filter, then sends exactly those events, delivered ones included, once each, with its name", func() {
		const events = 300
		ns := newNamespace()
		origin := newEndpoint()
		newHTTPSink(ns, origin.url())
		startOperator(ns, kubeconfig, "--delivered-retention=1h")

		// Events 0-149 are delivered, 150-299 rejected; a third are of another account, a
		// fifth unsubscribes; their event times are a second apart.
		account := func(i int) string {
			if i%3 == 2 {
				return "@TOA#_other"
			}
			return "@TOA#_stored"
		}
		action := func(i int) v1alpha1.Action {
			if i%5 == 4 {
				return v1alpha1.ActionUnsubscribe
			}
			return v1alpha1.ActionSubscribe
		}
		mutate := func(i int, ev *v1alpha1.OfficialAccountSubscription) {
			ev.Spec.OfficialAccount, ev.Spec.Action, ev.Spec.EventTime = account(i), action(i), replayEventTime(i)
		}
		createEventsWith(ns, events/2, mutate)
		settled(ns, "downstream", events/2)
		origin.answer.Store(http.StatusBadRequest)
		createEventsWith(ns, events/2, func(i int, ev *v1alpha1.OfficialAccountSubscription) {
			ev.Name = "oasub-stored-" + strconv.Itoa(i+events/2)
			ev.Spec.Subscribers = []string{"user" + strconv.Itoa(i+events/2)}
			mutate(i+events/2, ev)
		})
		settled(ns, "downstream", events)
		origin.answer.Store(0)

		// The window [50 s, 250 s) of @TOA#_stored's Subscribe events, delivered or failed.
		want := map[string]int{}
		for i := 50; i < 250; i++ {
			if account(i) == "@TOA#_stored" && action(i) == v1alpha1.ActionSubscribe {
				want["oasub-stored-"+strconv.Itoa(i)] = 1
			}
		}
		replay := newReplay(ns, "resend", "downstream", func(r *v1alpha1.SubscriptionReplay) {
			r.Spec.States = []v1alpha1.ReplayState{v1alpha1.ReplayDelivered, v1alpha1.ReplayFailed}
			r.Spec.OfficialAccounts = []string{"@TOA#_stored"}
			r.Spec.Actions = []v1alpha1.Action{v1alpha1.ActionSubscribe}
			r.Spec.EventTimeAfter = &metav1.Time{Time: time.UnixMilli(replayEventTime(50))}
			r.Spec.EventTimeBefore = &metav1.Time{Time: time.UnixMilli(replayEventTime(250))}
			r.Spec.DryRun = true
		})
		Eventually(replayReason(replay), time.Minute).Should(Equal(v1alpha1.ReasonDryRun))
		Expect(replayNow(replay).Status.Matched).To(BeEquivalentTo(len(want)))
		Expect(labelledBy(ns, "resend")).To(BeZero(), "a dry run selects nothing")
		Expect(origin.replaysOf("resend")).To(BeEmpty(), "a dry run sends nothing")

		run := replayNow(replay)
		run.Spec.DryRun = false
		Expect(k8s.Update(context.Background(), run)).To(Succeed())
		Eventually(replayReason(replay), 2*time.Minute).Should(Equal(v1alpha1.ReasonComplete))
		status := replayNow(replay).Status
		Expect(status.Matched).To(BeEquivalentTo(len(want)))
		Expect(status.Delivered).To(BeEquivalentTo(len(want)))
		Expect(status.Failed).To(BeZero())
		Expect(status.StartTime).NotTo(BeNil())
		Expect(status.CompletionTime).NotTo(BeNil())
		Expect(origin.replaysOf("resend")).To(Equal(want), "exactly the selected events, once each, named as the replay's")
		for _, ev := range eventsOf(ns) {
			if want[ev.Name] == 1 {
				Expect(ev.Status.Sinks).To(ContainElement(SatisfyAll(HaveField("Name", v1alpha1.ReplayDeliveryName("resend")),
					HaveField("State", v1alpha1.DeliveryDelivered), HaveField("ReplaySink", "downstream"))))
			}
		}
	})

	It("backfills a sink the events never matched, and refuses to select more than maxEvents or to run without its sink", func() {
		const events = 20
		ns := newNamespace()
		origin, backfill := newEndpoint(), newEndpoint()
		newHTTPSink(ns, origin.url())
		startOperator(ns, kubeconfig, "--delivered-retention=1h")
		createEventsWith(ns, events, func(i int, ev *v1alpha1.OfficialAccountSubscription) { ev.Spec.EventTime = replayEventTime(i) })
		settled(ns, "downstream", events)

		tooMany := newReplay(ns, "too-many", "downstream", func(r *v1alpha1.SubscriptionReplay) {
			r.Spec.States = []v1alpha1.ReplayState{v1alpha1.ReplayDelivered}
			r.Spec.MaxEvents = ptr.To[int32](events - 1)
		})
		Eventually(replayReason(tooMany), time.Minute).Should(Equal(v1alpha1.ReasonTooManyEvents))
		Expect(meta.IsStatusConditionTrue(replayNow(tooMany).Status.Conditions, v1alpha1.ConditionStalled)).To(BeTrue())
		Expect(replayNow(tooMany).Status.Matched).To(BeEquivalentTo(events))
		Expect(labelledBy(ns, "too-many")).To(BeZero(), "nothing is selected, so nothing is sent")

		backfillReplay := newReplay(ns, "backfill", "late", func(r *v1alpha1.SubscriptionReplay) {
			r.Spec.States = []v1alpha1.ReplayState{v1alpha1.ReplayDelivered}
		})
		Eventually(replayReason(backfillReplay), time.Minute).Should(Equal(v1alpha1.ReasonSinkNotFound))
		Expect(meta.IsStatusConditionTrue(replayNow(backfillReplay).Status.Conditions, v1alpha1.ConditionStalled)).To(BeTrue())
		Expect(labelledBy(ns, "backfill")).To(BeZero())

		newHTTPSink(ns, backfill.url(), func(s *v1alpha1.SubscriptionSink) { s.Name = "late" })
		Eventually(replayReason(backfillReplay), time.Minute).Should(Equal(v1alpha1.ReasonComplete))
		Expect(replayNow(backfillReplay).Status.Delivered).To(BeEquivalentTo(events))
		Expect(backfill.replaysOf("backfill")).To(HaveLen(events), "every stored event, to a sink none of them matched")
		Expect(origin.replaysOf("backfill")).To(BeEmpty())

		// Deleted and applied again, as kubectl or a GitOps tool would: a replay of its own.
		Expect(k8s.Delete(context.Background(), backfillReplay)).To(Succeed())
		Eventually(func() error {
			return k8s.Get(context.Background(), client.ObjectKeyFromObject(backfillReplay), &v1alpha1.SubscriptionReplay{})
		}).Should(MatchError(ContainSubstring("not found")))
		again := newReplay(ns, "backfill", "late", func(r *v1alpha1.SubscriptionReplay) {
			r.Spec.States = []v1alpha1.ReplayState{v1alpha1.ReplayDelivered}
		})
		Eventually(replayReason(again), time.Minute).Should(Equal(v1alpha1.ReasonComplete))
		Expect(replayNow(again).Status.Delivered).To(BeEquivalentTo(events))
		for id, n := range backfill.replaysOf("backfill") {
			Expect(n).To(Equal(2), "event %s: once for each replay", id)
		}

		// A started replay's selection is frozen: its spec cannot change.
		changed := replayNow(again)
		changed.Spec.SinkName = "downstream"
		Expect(k8s.Update(context.Background(), changed)).To(MatchError(ContainSubstring("cannot change")))
	})

	It("stops when deleted: deliveries under way finish, nothing more starts", func() {
		const events = 30
		ns := newNamespace()
		origin, slow := newEndpoint(), newEndpoint()
		newHTTPSink(ns, origin.url())
		newHTTPSink(ns, slow.url(), func(s *v1alpha1.SubscriptionSink) {
			s.Name, s.Spec.MaxInFlight, s.Spec.Actions = "slow", ptr.To[int32](1), []v1alpha1.Action{v1alpha1.ActionAccountDestroyed}
		})
		slow.delay.Store(int64(300 * time.Millisecond))
		startOperator(ns, kubeconfig, "--delivered-retention=1h")
		createEvents(ns, events)
		settled(ns, "downstream", events)

		replay := newReplay(ns, "interrupted", "slow", func(r *v1alpha1.SubscriptionReplay) {
			r.Spec.States = []v1alpha1.ReplayState{v1alpha1.ReplayDelivered}
		})
		Eventually(func() int { return len(slow.replaysOf("interrupted")) }, time.Minute).Should(BeNumerically(">=", 3))
		Expect(k8s.Delete(context.Background(), replay)).To(Succeed())
		deleted := time.Now()

		entry := v1alpha1.ReplayDeliveryName("interrupted")
		var delivered int
		Eventually(func() (pending int) {
			delivered = 0
			for _, ev := range eventsOf(ns) {
				for _, d := range ev.Status.Sinks {
					switch {
					case d.Name != entry:
					case d.State == v1alpha1.DeliveryPending:
						pending++
					case d.State == v1alpha1.DeliveryDelivered:
						delivered++
					}
				}
			}
			return pending
		}, time.Minute, 200*time.Millisecond).Should(BeZero(), "the deleted replay's pending deliveries are dropped")
		Expect(delivered).To(BeNumerically("<", events), "the replay stopped before the end")
		// The sink takes one delivery at a time: the one under way, and at most one whose
		// turn came as the operator's cache learnt of the delete, arrive after it; the
		// deliveries queued behind them in the lane do not start.
		Expect(slow.replayRequestsAfter("interrupted", deleted)).To(BeNumerically("<=", 2), "nothing more starts")
		sent := slow.replaysOf("interrupted")
		Expect(sent).To(HaveLen(delivered), "every request the sink got is a delivery recorded")
		for id, n := range sent {
			Expect(n).To(Equal(1), "event %s", id)
		}
	})
})
