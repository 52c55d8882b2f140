package controllers_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/internal/backlog"
)

var _ = Describe("The count of pending events", func() {
	// A webhook forgets its own stores only once a newer count includes them: a count
	// left unwritten while it stays the same would let the webhook's estimate grow with
	// every store and answer 503 without cause.
	It("is written anew every interval, even while it stays the same", func() {
		read := func() backlog.Count {
			var cm corev1.ConfigMap
			Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: eventNamespace, Name: backlog.ConfigMapName}, &cm)).To(Succeed())
			count, err := backlog.From(&cm)
			Expect(err).NotTo(HaveOccurred())
			return count
		}
		var first backlog.Count
		Eventually(func() error {
			var cm corev1.ConfigMap
			return k8s.Get(context.Background(), client.ObjectKey{Namespace: eventNamespace, Name: backlog.ConfigMapName}, &cm)
		}, 30*time.Second).Should(Succeed())
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
})
