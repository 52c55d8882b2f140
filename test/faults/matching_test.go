package faults

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

var _ = Describe("A sink cache behind the API server", func() {
	It("delivers an event to a sink created just before it, though the operator's cache has not seen the sink yet", func() {
		ns := newNamespace()
		// The operator learns of sinks 5 s late; events arrive on time.
		op := startOperator(ns, plainKubeconfig(newSinkWatchDelayingProxy(restConfig, 5*time.Second)), "--leader-elect=false")

		// A first sink shows when the sink watch runs (and lags): once its status is
		// written, the next sink reaches the operator only through the late watch.
		warmup := newHTTPSink(ns, newEndpoint().url(), func(s *v1alpha1.SubscriptionSink) {
			s.Name, s.Spec.OfficialAccounts = "warmup", []string{"@TOA#_none"}
		})
		Eventually(func() bool {
			var got v1alpha1.SubscriptionSink
			return k8s.Get(context.Background(), client.ObjectKeyFromObject(warmup), &got) == nil &&
				meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady) != nil
		}, time.Minute).Should(BeTrue())

		sink := newEndpoint()
		newHTTPSink(ns, sink.url())
		s := &senders{account: uniqueAccount()}
		Expect(s.sendOne(op.webhookURL).ok()).To(BeTrue())

		Eventually(sink.deliveries, time.Minute).Should(Equal(1), "the event was not delivered to the sink created before it")
		Eventually(func() int { return countReady(ns) }, time.Minute).Should(Equal(1))
	})
})
