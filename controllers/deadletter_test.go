package controllers_test

import (
	"context"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

var _ = Describe("A dead-letter sink", func() {
	It("receives once, with what went wrong, an event its sink rejected, retrying while it is down itself", func() {
		account := uniqueAccount()
		origin := testenv.NewReceiver(http.StatusBadRequest)
		DeferCleanup(origin.Close)
		letters := testenv.NewReceiver(http.StatusServiceUnavailable) // down once, then up
		DeferCleanup(letters.Close)
		newSink("dead-letters", "@TOA#_no_event_of_its_own", letters, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.Retry.InitialInterval = &metav1.Duration{Duration: 100 * time.Millisecond}
		})
		sink := newSink("dead-lettering", account, origin, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.DeadLetterSinkRef = &v1alpha1.SinkReference{Name: "dead-letters"}
		})
		sinkObserved(sink)
		subscribe(account, "jared")
		sub := onlySubscription(account)
		done := waitFor(sub.Name, hasReason(v1alpha1.ReasonDeadLettered))
		Expect(isReady(done)).To(BeTrue())
		Expect(done.Status.Sinks).To(ConsistOf(
			SatisfyAll(HaveField("Name", "dead-lettering"), HaveField("State", v1alpha1.DeliveryFailed),
				HaveField("FailureReason", v1alpha1.FailureRejected)),
			SatisfyAll(HaveField("Name", v1alpha1.DeadLetterName("dead-lettering")), HaveField("State", v1alpha1.DeliveryDelivered),
				HaveField("DeadLetterSink", "dead-letters"), HaveField("Attempts", int32(2)))))

		Expect(origin.Requests()).To(HaveLen(1))
		requests := letters.Requests()
		Expect(requests).To(HaveLen(2), "the dead-letter sink's own retry")
		for _, req := range requests {
			Expect(req.Header.Get("ce-id")).To(Equal(sub.Name))
			Expect(req.Header.Get("ce-deadlettersink")).To(Equal("dead-lettering"))
			Expect(req.Header.Get("ce-deadletterreason")).To(Equal(v1alpha1.FailureRejected))
			Expect(req.Header.Get("ce-deadlettererror")).To(ContainSubstring("400"))
		}
		Eventually(func() int32 { return sinkNow(sink).Status.DeadLettered }).Should(BeEquivalentTo(1))
		Expect(sinkNow(sink).Status.Failed).To(BeZero(), "a dead-lettered event is not counted as failed")

		retry(sub.Name, "after-the-fix") // the receiver is fixed: the retry annotation still re-sends to the sink
		waitFor(sub.Name, hasReason(v1alpha1.ReasonDelivered))
		Expect(origin.Requests()).To(HaveLen(2))
		Expect(letters.Requests()).To(HaveLen(2), "nothing more is dead-lettered")
	})

	It("is refused when it names its own sink", func() {
		receiver := testenv.NewReceiver()
		DeferCleanup(receiver.Close)
		sink := &v1alpha1.SubscriptionSink{
			ObjectMeta: metav1.ObjectMeta{Name: "own-letters", Namespace: eventNamespace},
			Spec: v1alpha1.SubscriptionSinkSpec{HTTP: &v1alpha1.HTTPDestination{URL: receiver.URL},
				DeadLetterSinkRef: &v1alpha1.SinkReference{Name: "own-letters"}},
		}
		err := k8s.Create(context.Background(), sink)
		Expect(err).To(MatchError(ContainSubstring("a sink cannot be its own dead-letter sink")))
	})

	It("that does not exist makes its sink not Ready, and deliveries go on", func() {
		account, receiver := accountWithReceiver()
		sink := newSink("letters-nowhere", account, receiver, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.DeadLetterSinkRef = &v1alpha1.SinkReference{Name: "no-such-sink"}
		})
		Eventually(sinkNotReady(sink)).Should(SatisfyAll(HavePrefix(v1alpha1.ReasonDeadLetterSinkNotFound+": "),
			ContainSubstring("no-such-sink")))
		subscribe(account, "jared")
		waitFor(onlySubscription(account).Name, hasReason(v1alpha1.ReasonDelivered))
	})
})
