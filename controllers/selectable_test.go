package controllers_test

import (
	"context"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

var _ = Describe("Field selectors on events", func() {
	It("select by Official Account, action, SDKAppID and command at the API server, as kubectl get --field-selector does", func() {
		account, other := uniqueAccount(), uniqueAccount()
		for _, e := range []struct {
			command, account, subscriber string
		}{
			{webhookserver.CommandAfterAddSubscriber, account, "jared"},
			{webhookserver.CommandAfterAddSubscriber, account, "leckie"},
			{webhookserver.CommandAfterDeleteSubscriber, account, "jared"},
			{webhookserver.CommandAfterAddSubscriber, other, "jared"},
		} {
			body := callback(e.command, e.account, time.Now().UnixMilli(), e.subscriber)
			// A 503 stored nothing (or the same event, under the same name): sending again is safe.
			Eventually(func() int { status, _ := post(query(plainApp, e.command), body); return status }).Should(Equal(http.StatusOK))
		}
		selected := func(fields client.MatchingFields) []string {
			var list v1alpha1.OfficialAccountSubscriptionList
			Expect(k8s.List(context.Background(), &list, client.InNamespace(eventNamespace), fields)).To(Succeed())
			var subscribers []string
			for _, sub := range list.Items {
				subscribers = append(subscribers, string(sub.Spec.Action)+":"+sub.Spec.Subscribers[0])
			}
			return subscribers
		}
		Expect(selected(client.MatchingFields{"spec.officialAccount": account, "spec.action": string(v1alpha1.ActionSubscribe)})).
			To(ConsistOf("Subscribe:jared", "Subscribe:leckie"))
		Expect(selected(client.MatchingFields{"spec.officialAccount": account, "spec.callbackCommand": webhookserver.CommandAfterDeleteSubscriber})).
			To(ConsistOf("Unsubscribe:jared"))
		Expect(selected(client.MatchingFields{"spec.officialAccount": other, "spec.sdkAppID": plainApp})).To(ConsistOf("Subscribe:jared"))
		Expect(selected(client.MatchingFields{"spec.officialAccount": other, "spec.sdkAppID": "1400009999"})).To(BeEmpty())
	})
})
