package controllers_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// sinkObserved waits until the operator has reconciled the sink's current generation: its
// cache holds that generation.
func sinkObserved(sink *v1alpha1.SubscriptionSink) {
	GinkgoHelper()
	Eventually(func() bool {
		var got v1alpha1.SubscriptionSink
		Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(sink), &got)).To(Succeed())
		return got.Status.ObservedGeneration == got.Generation
	}, time.Minute).Should(BeTrue())
}

var _ = Describe("Deliveries queued behind a hung one", func() {
	It("go to the sink as it is when their turn comes, not as it was when they were queued", func() {
		const events = 5
		hung := testenv.NewHungReceiver()
		DeferCleanup(hung.Close)
		account, moved := accountWithReceiver()
		sink := newSink("queued-behind", account, &testenv.Receiver{Server: hung.Server}, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.MaxInFlight = ptr.To[int32](1)
			s.Spec.HTTP.Timeout = &metav1.Duration{Duration: time.Minute}
		})
		sendEvents(account, events)
		Eventually(func() int { started, _ := hung.Stats(); return started }, time.Minute).Should(Equal(1),
			"one delivery holds the lane; the others wait in its queue")

		Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(sink), sink)).To(Succeed())
		sink.Spec.HTTP.URL = moved.URL
		Expect(k8s.Update(context.Background(), sink)).To(Succeed())
		sinkObserved(sink)
		hung.Close() // the hung delivery is answered, and the queue moves on

		Eventually(func() int { return len(moved.Requests()) }, time.Minute).Should(Equal(events - 1))
		Eventually(func() []int32 {
			var attempts []int32
			for _, sub := range subscriptionsOf(account) {
				for _, d := range sub.Status.Sinks {
					if d.State == v1alpha1.DeliveryDelivered {
						attempts = append(attempts, d.Attempts)
					}
				}
			}
			return attempts
		}, time.Minute).Should(HaveLen(events))
		for _, sub := range subscriptionsOf(account) {
			Expect(sub.Status.Sinks[0].Attempts).To(BeEquivalentTo(1), "a queued delivery was tried at the old URL first")
		}
		started, _ := hung.Stats()
		Expect(started).To(Equal(1), "no queued delivery went to the old URL")
	})

	It("wait while their sink is suspended, without an attempt", func() {
		const events = 4
		hung := testenv.NewHungReceiver()
		DeferCleanup(hung.Close)
		account := uniqueAccount()
		sink := newSink("queued-suspended", account, &testenv.Receiver{Server: hung.Server}, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.MaxInFlight = ptr.To[int32](1)
			s.Spec.HTTP.Timeout = &metav1.Duration{Duration: time.Minute}
		})
		sendEvents(account, events)
		Eventually(func() int { started, _ := hung.Stats(); return started }, time.Minute).Should(Equal(1))

		Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(sink), sink)).To(Succeed())
		sink.Spec.Suspend = true
		Expect(k8s.Update(context.Background(), sink)).To(Succeed())
		sinkObserved(sink)
		hung.Close()

		Eventually(func() int {
			waiting := 0
			for _, sub := range subscriptionsOf(account) {
				for _, d := range sub.Status.Sinks {
					if d.State == v1alpha1.DeliveryPending && d.Attempts == 0 && d.NextAttemptTime == nil {
						waiting++
					}
				}
			}
			return waiting
		}, time.Minute).Should(Equal(events-1), "the queued deliveries wait for the sink to resume, unattempted")
		started, _ := hung.Stats()
		Expect(started).To(Equal(1), "a queued delivery was attempted while its sink was suspended")
	})
})
