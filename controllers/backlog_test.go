package controllers_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
	"github.com/chat-operators/officialaccount-operator/internal/backlog"
)

// published is the count in the ConfigMap the webhooks read.
func published() (backlog.Count, error) {
	var cm corev1.ConfigMap
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: eventNamespace, Name: backlog.ConfigMapName}, &cm); err != nil {
		return backlog.Count{}, err
	}
	return backlog.From(&cm)
}

// countedAfter lists the stored pending events, then waits for a count the leader took
// after that list, so that the two see the same events unless one changed in between.
func countedAfter(g Gomega, stored func() int) (c struct{ stored, pending int }) {
	c.stored = stored()
	listed := time.Now()
	g.Eventually(func(g Gomega) {
		count, err := published()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(count.CountedAt).To(BeTemporally(">", listed))
		c.pending = count.Pending
	}, 10*time.Second, 200*time.Millisecond).Should(Succeed())
	return c
}

// storedPending counts, from the API server, the stored events that count against
// --max-pending-events: not complete, no snapshot part, not waiting for replays alone.
func storedPending() int {
	GinkgoHelper()
	var list v1alpha1.OfficialAccountSubscriptionList
	Expect(k8s.List(context.Background(), &list, client.InNamespace(eventNamespace))).To(Succeed())
	pending := 0
	for _, sub := range list.Items {
		if sub.Status.CompletionTime == nil && sub.Spec.Action != v1alpha1.ActionSnapshot && !delivery.OnlyReplaysPending(&sub.Status) {
			pending++
		}
	}
	return pending
}

var _ = Describe("The count of pending events", func() {
	// A webhook forgets its own stores only once a newer count includes them: a count
	// left unwritten while it stays the same would let the webhook's estimate grow with
	// every store and answer 503 without cause.
	It("is written anew every interval, even while it stays the same", func() {
		read := func() backlog.Count {
			count, err := published()
			Expect(err).NotTo(HaveOccurred())
			return count
		}
		var first backlog.Count
		Eventually(func() error { _, err := published(); return err }, 30*time.Second).Should(Succeed())
		first = read()
		// Three newer counts well within the minute the publisher used to wait.
		seen := map[time.Time]bool{}
		Eventually(func() int {
			if c := read(); c.CountedAt.After(first.CountedAt) {
				seen[c.CountedAt] = true
			}
			return len(seen)
		}, 20*time.Second, 200*time.Millisecond).Should(BeNumerically(">=", 3))
	})

	It("is the number of stored events not yet complete, as they are stored and as they complete", func() {
		account, receiver := accountWithReceiver()
		sink := newSink("held-for-the-count", account, receiver, func(s *v1alpha1.SubscriptionSink) { s.Spec.Suspend = true })
		for i := range 3 {
			subscribe(account, fmt.Sprintf("member-%d", i))
		}
		Eventually(func(g Gomega) {
			count := countedAfter(g, storedPending)
			g.Expect(count.pending).To(BeNumerically(">=", 3), "the held events count")
			g.Expect(count.pending).To(Equal(count.stored))
		}, 30*time.Second, 200*time.Millisecond).Should(Succeed())

		patch := client.MergeFrom(sink.DeepCopy())
		sink.Spec.Suspend = false
		Expect(k8s.Patch(context.Background(), sink, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			for _, sub := range subscriptionsOf(account) {
				g.Expect(sub.Status.CompletionTime).NotTo(BeNil(), "delivered once the sink resumed")
			}
			count := countedAfter(g, storedPending)
			g.Expect(count.pending).To(Equal(count.stored), "the completed events left the count")
		}, 30*time.Second, 200*time.Millisecond).Should(Succeed())
	})
})
