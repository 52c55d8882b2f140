package faults

import (
	"context"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

var _ = Describe("The cap on pending events (--max-pending-events)", func() {
	It("answers 503 FAIL at the cap, stores no more, and takes callbacks again by itself once deliveries complete", func() {
		const limit = 20
		ns := newNamespace()
		endpoint := newEndpoint()
		sink := newHTTPSink(ns, endpoint.url(), func(s *v1alpha1.SubscriptionSink) { s.Spec.Suspend = true })
		op := startOperator(ns, kubeconfig, "--max-pending-events=20")

		s := &senders{account: uniqueAccount()}
		var refused answer
		for range 10 * limit {
			a := s.sendOne(op.webhookURL)
			if a.status == http.StatusServiceUnavailable {
				refused = a
				break
			}
			Expect(a.ok()).To(BeTrue(), "below the cap: %d %q %v", a.status, a.info, a.err)
		}
		Expect(refused.action).To(Equal("FAIL"), "the cap was reached")
		Expect(refused.info).To(ContainSubstring("--max-pending-events 20"))
		stored := len(eventsOf(ns))
		Expect(stored).To(And(BeNumerically("<=", limit), BeNumerically(">=", limit/2)), "stored events stop at the cap")
		for range 10 {
			Expect(s.sendOne(op.webhookURL).status).To(Equal(http.StatusServiceUnavailable))
		}
		Expect(eventsOf(ns)).To(HaveLen(stored), "nothing more is stored")

		patch := client.MergeFrom(sink.DeepCopy())
		sink.Spec.Suspend = false
		Expect(k8s.Patch(context.Background(), sink, patch)).To(Succeed())
		Eventually(func() bool { return s.sendOne(op.webhookURL).ok() }, time.Minute, 500*time.Millisecond).
			Should(BeTrue(), "ingest resumes by itself once deliveries complete")
		allDelivered(endpoint, s)
	})
})
