package controllers_test

import (
	"context"
	"net/http"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// hasReason reports whether the event's Ready condition has the reason.
func hasReason(reason string) func(*v1alpha1.OfficialAccountSubscription) bool {
	return func(s *v1alpha1.OfficialAccountSubscription) bool {
		c := readyCondition(s)
		return c != nil && c.Reason == reason
	}
}

// retry sets the retry annotation of the event to a new value.
func retry(name, value string) {
	GinkgoHelper()
	sub := &v1alpha1.OfficialAccountSubscription{}
	Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: eventNamespace, Name: name}, sub)).To(Succeed())
	patch := client.MergeFrom(sub.DeepCopy())
	sub.Annotations = map[string]string{v1alpha1.AnnotationRetry: value}
	Expect(k8s.Patch(context.Background(), sub, patch)).To(Succeed())
}

func deleteSink(sink *v1alpha1.SubscriptionSink) {
	GinkgoHelper()
	Expect(k8s.Delete(context.Background(), sink)).To(Succeed())
	Eventually(func() error {
		return k8s.Get(context.Background(), client.ObjectKeyFromObject(sink), &v1alpha1.SubscriptionSink{})
	}).ShouldNot(Succeed())
}

var _ = Describe("An event's lifecycle when sinks come and go", func() {
	var (
		account  string
		receiver *testenv.Receiver
	)
	BeforeEach(func() { account, receiver = accountWithReceiver() })
	send := func(subscriber string) string {
		GinkgoHelper()
		subscribe(account, subscriber)
		return onlySubscription(account).Name
	}

	It("resumes a delivery when its sink is deleted and re-created within the grace period, delivering once", func() {
		sink := newSink("replaced", account, receiver, func(s *v1alpha1.SubscriptionSink) { s.Spec.Suspend = true })
		name := send("jared")
		waitFor(name, hasReason(v1alpha1.ReasonDelivering))

		deleteSink(sink)
		waiting := waitFor(name, hasReason(v1alpha1.ReasonSinkNotFound))
		Expect(waiting.Status.Sinks[0].SinkMissingSince).NotTo(BeNil())
		Expect(readyCondition(waiting).Message).To(ContainSubstring("waiting until"))

		newSink("replaced", account, receiver) // as Helm or Argo CD re-create it
		done := waitFor(name, isReady)
		Expect(done.Status.Sinks[0].SinkMissingSince).To(BeNil())
		Consistently(func() int { return len(receiver.Requests()) }, 2*time.Second).Should(Equal(1))
	})

	It("fails a delivery whose sink does not come back within the grace period, and the retry annotation sends it to the sinks that match now", func() {
		sink := newSink("gone-for-good", account, receiver, func(s *v1alpha1.SubscriptionSink) { s.Spec.Suspend = true })
		name := send("jared")
		waitFor(name, hasReason(v1alpha1.ReasonDelivering))
		deleteSink(sink)

		failed := waitFor(name, func(s *v1alpha1.OfficialAccountSubscription) bool {
			return meta.IsStatusConditionTrue(s.Status.Conditions, v1alpha1.ConditionStalled)
		})
		Expect(failed.Status.Sinks[0].LastError).To(ContainSubstring("none of that name came back"))

		newSink("successor", account, receiver)
		retry(name, "after-the-sink-was-replaced")
		done := waitFor(name, isReady)
		Expect(done.Status.Sinks).To(HaveLen(1))
		Expect(done.Status.Sinks[0].Name).To(Equal("successor"))
		Expect(receiver.Requests()).To(HaveLen(1))
	})

	It("sends an event that matched no sink to a sink created later once the retry annotation is set", func() {
		name := send("jared")
		waitFor(name, hasReason(v1alpha1.ReasonNoMatchingSinks))

		newSink("created-later", account, receiver)
		Consistently(func() int { return len(receiver.Requests()) }, time.Second).Should(BeZero(),
			"a sink created after the event receives it only when asked")
		retry(name, "now-there-is-a-sink")
		waitFor(name, hasReason(v1alpha1.ReasonDelivered))
		Expect(receiver.Requests()).To(HaveLen(1))
	})
})

var _ = Describe("A sink's status", func() {
	sinkNamed := func(name string) *v1alpha1.SubscriptionSink {
		sink := &v1alpha1.SubscriptionSink{}
		Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: eventNamespace, Name: name}, sink)).To(Succeed())
		return sink
	}

	It("counts the events pending and failed for it, and says when it last delivered", func() {
		account := uniqueAccount()
		receiver := testenv.NewReceiver()
		DeferCleanup(receiver.Close)
		held := newSink("status-held", account, receiver, func(s *v1alpha1.SubscriptionSink) { s.Spec.Suspend = true })
		sendEvents(account, 3)

		Eventually(func() int32 { return sinkNamed("status-held").Status.Pending }).Should(BeEquivalentTo(3))
		status := sinkNamed("status-held").Status
		Expect(status.Failed).To(BeZero())
		Expect(status.Retrying).To(BeZero())
		Expect(status.OldestPendingTime).NotTo(BeNil())
		Expect(status.LastDeliveryTime).To(BeNil())

		rejecting := testenv.NewReceiver(http.StatusBadRequest, http.StatusBadRequest)
		DeferCleanup(rejecting.Close)
		otherAccount := uniqueAccount()
		newSink("status-rejected", otherAccount, rejecting)
		sendEvents(otherAccount, 2)
		Eventually(func() int32 { return sinkNamed("status-rejected").Status.Failed }).Should(BeEquivalentTo(2))
		rejected := sinkNamed("status-rejected")
		Expect(meta.IsStatusConditionTrue(rejected.Status.Conditions, v1alpha1.ConditionStalled)).To(BeTrue())
		ready := meta.FindStatusCondition(rejected.Status.Conditions, v1alpha1.ConditionReady)
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Reason).To(Equal(v1alpha1.ReasonDeliveryErrors))
		Expect(rejected.Status.LastError).To(ContainSubstring("400"))
		Expect(rejected.Status.LastErrorTime).NotTo(BeNil())

		// A sink that answers 503 (its circuit opens after a few) keeps its events pending,
		// each attempted: retrying.
		unavailable := testenv.NewReceiver(slices.Repeat([]int{http.StatusServiceUnavailable}, 100)...)
		DeferCleanup(unavailable.Close)
		thirdAccount := uniqueAccount()
		newSink("status-retrying", thirdAccount, unavailable)
		sendEvents(thirdAccount, 2)
		Eventually(func() int32 { return sinkNamed("status-retrying").Status.Retrying }).Should(BeEquivalentTo(2))
		Expect(sinkNamed("status-retrying").Status.Pending).To(BeEquivalentTo(2))

		patch := client.MergeFrom(held.DeepCopy())
		held.Spec.Suspend = false
		Expect(k8s.Patch(context.Background(), held, patch)).To(Succeed())
		Eventually(func() int32 { return sinkNamed("status-held").Status.Pending }).Should(BeZero())
		resumed := sinkNamed("status-held")
		Expect(resumed.Status.LastDeliveryTime).NotTo(BeNil())
		Expect(meta.IsStatusConditionTrue(resumed.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		Expect(meta.FindStatusCondition(resumed.Status.Conditions, v1alpha1.ConditionStalled)).To(BeNil())
	})

	It("writes its status every few seconds at most, not once per event", func() {
		account := uniqueAccount()
		receiver := testenv.NewReceiver()
		DeferCleanup(receiver.Close)
		newSink("status-writes", account, receiver, func(s *v1alpha1.SubscriptionSink) { s.Spec.MaxInFlight = ptr.To[int32](8) })
		Eventually(func() []metav1.Condition { return sinkNamed("status-writes").Status.Conditions }).ShouldNot(BeEmpty())

		// Each write of the sink is one MODIFIED event on a watch of it.
		watcher, err := client.NewWithWatch(env.Config, client.Options{Scheme: k8s.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		w, err := watcher.Watch(context.Background(), &v1alpha1.SubscriptionSinkList{}, client.InNamespace(eventNamespace),
			client.MatchingFields{"metadata.name": "status-writes"})
		Expect(err).NotTo(HaveOccurred())
		counted := make(chan int)
		go func() {
			n := 0
			for range w.ResultChan() {
				n++
			}
			counted <- n
		}()
		start := time.Now()
		sendEvents(account, 100)
		Eventually(func() int { return len(receiver.Requests()) }, time.Minute).Should(Equal(100))
		Eventually(func() int32 { return sinkNamed("status-writes").Status.Pending }).Should(BeZero())
		elapsed := time.Since(start)
		w.Stop()
		writes := <-counted

		allowed := int(elapsed/(5*time.Second)) + 2
		GinkgoWriter.Printf("100 events in %v: %d writes of the sink (at most %d allowed)\n", elapsed, writes, allowed)
		Expect(writes).To(BeNumerically(">=", 1), "the sink's status never changed")
		Expect(writes).To(BeNumerically("<=", allowed), "the sink's status was written per event")
	})
})
