package controllers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// destroyedCallback is Tencent's OfficialAccount.CallbackAfterOfficialAccountDestroyed for
// the account, the fixture's shape.
func destroyedCallback(account string, eventTime int64) []byte {
	GinkgoHelper()
	var body map[string]any
	Expect(json.Unmarshal(testenv.Fixture("after-official-account-destroyed.json"), &body)).To(Succeed())
	body["Official_Account"], body["EventTime"] = account, eventTime
	b, err := json.Marshal(body)
	Expect(err).NotTo(HaveOccurred())
	return b
}

var _ = Describe("A destroyed Official Account", func() {
	It("is stored as AccountDestroyed and delivered as sent to HTTP receivers and NATS", func() {
		account, cloudEvents := accountWithReceiver()
		tencentFormat := testenv.NewReceiver()
		DeferCleanup(tencentFormat.Close)
		newSink("destroyed-ce", account, cloudEvents)
		newSink("destroyed-tencent", account, tencentFormat, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.HTTP.Format = v1alpha1.HTTPFormatTencent
			s.Spec.Actions = []v1alpha1.Action{v1alpha1.ActionAccountDestroyed} // the filter selects it
		})
		srv := testenv.StartNATS(GinkgoTB(), "")
		conn, err := nats.Connect(srv.ClientURL())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		js, err := jetstream.New(conn)
		Expect(err).NotTo(HaveOccurred())
		stream, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "DESTROYED", Subjects: []string{"officialaccount.>"}})
		Expect(err).NotTo(HaveOccurred())
		broker := &v1alpha1.SubscriptionSink{
			ObjectMeta: metav1.ObjectMeta{Name: "destroyed-nats", Namespace: eventNamespace},
			Spec:       v1alpha1.SubscriptionSinkSpec{OfficialAccounts: []string{account}, NATS: &v1alpha1.NATSDestination{URL: srv.ClientURL()}},
		}
		Expect(k8s.Create(context.Background(), broker)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), broker) })

		body := destroyedCallback(account, time.Now().UnixMilli())
		status, answer := post(query(plainApp, webhookserver.CommandAfterAccountDestroyed), body)
		Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		status, _ = post(query(plainApp, webhookserver.CommandAfterAccountDestroyed), body)
		Expect(status).To(Equal(http.StatusOK), "a repeat is a duplicate, stored once")

		sub := onlySubscription(account)
		Expect(sub.Spec.Action).To(Equal(v1alpha1.ActionAccountDestroyed))
		Expect(sub.Spec.Subscribers).To(BeEmpty())
		Expect(sub.Spec.OwnerAccount).To(Equal("107867"))
		Expect(sub.Spec.AccountName).To(Equal("penn"))
		Expect(sub.Labels[v1alpha1.LabelAction]).To(Equal(string(v1alpha1.ActionAccountDestroyed)))
		delivered := waitFor(sub.Name, isReady)
		Expect(delivered.Status.Sinks).To(HaveLen(3))

		Expect(cloudEvents.Requests()).To(HaveLen(1))
		Expect(cloudEvents.Requests()[0].Header.Get("ce-type")).To(Equal("dev.chat-operators.officialaccount.destroyed"))
		Expect(tencentFormat.Requests()).To(HaveLen(1))
		Expect(tencentFormat.Requests()[0].Body).To(MatchJSON(body), "the Tencent format resends the body as Tencent sent it")
		msg, err := stream.GetMsg(context.Background(), 1)
		Expect(err).NotTo(HaveOccurred())
		Expect(msg.Subject).To(Equal("officialaccount.accountdestroyed"))
		Expect(string(msg.Data)).To(ContainSubstring(`"type":"dev.chat-operators.officialaccount.destroyed"`))
	})

	It("is reported by a resync as destroyed, not as an error", func() {
		account := uniqueAccount()
		restStandIn.SetSubscribers(account, members("m", 2))
		resyncSecret("destroyed", restKey, true)
		rs := resyncOf("destroyed", []string{account}, nil)
		resyncCondition(rs, v1alpha1.ConditionReady, metav1.ConditionTrue)

		restStandIn.Destroy(account)
		status, answer := post(query(plainApp, webhookserver.CommandAfterAccountDestroyed), destroyedCallback(account, time.Now().UnixMilli()))
		Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		Eventually(func() int { return len(subscriptionsOf(account)) }).Should(BeNumerically(">=", 2), "the snapshot's part and the destruction")

		patch := []byte(`{"metadata":{"annotations":{"` + v1alpha1.AnnotationResyncNow + `":"after-destroy"}}}`)
		Expect(k8s.Patch(context.Background(), rs, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
		Eventually(func() v1alpha1.AccountResyncState {
			got := getResync(rs)
			if got.Status.LastHandledResync != "after-destroy" {
				return ""
			}
			return got.Status.Accounts[0].State
		}, 30*time.Second).Should(Equal(v1alpha1.AccountDestroyed))
		got := getResync(rs)
		Expect(readyReason(got)).To(Equal(v1alpha1.ReasonResynced))
		Expect(got.Status.DestroyedAccounts).To(BeEquivalentTo(1))
		Expect(got.Status.Accounts[0].LastError).To(BeEmpty())
	})

	It("is reported destroyed, not failed, after its AccountDestroyed event was deleted", func() {
		account, receiver := accountWithReceiver()
		newSink("destroyed-then-gone", account, receiver) // the event is delivered, then deleted after retention
		restStandIn.SetSubscribers(account, members("m", 2))
		resyncSecret("destroyed-gone", restKey, true)
		rs := resyncOf("destroyed-gone", []string{account}, nil)
		resyncCondition(rs, v1alpha1.ConditionReady, metav1.ConditionTrue)

		restStandIn.Destroy(account)
		status, answer := post(query(plainApp, webhookserver.CommandAfterAccountDestroyed), destroyedCallback(account, time.Now().UnixMilli()))
		Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		destroyedEvents := func() int {
			n := 0
			for _, s := range subscriptionsOf(account) {
				if s.Spec.Action == v1alpha1.ActionAccountDestroyed {
					n++
				}
			}
			return n
		}
		Eventually(destroyedEvents).Should(Equal(1))
		Eventually(destroyedEvents, 3*retention+30*time.Second, 200*time.Millisecond).Should(BeZero(), "deleted after its retention")

		patch := []byte(`{"metadata":{"annotations":{"` + v1alpha1.AnnotationResyncNow + `":"after-gone"}}}`)
		Expect(k8s.Patch(context.Background(), rs, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
		Eventually(func() string {
			return getResync(rs).Status.LastHandledResync
		}, 30*time.Second).Should(Equal("after-gone"))
		got := getResync(rs)
		Expect(got.Status.Accounts[0].State).To(Equal(v1alpha1.AccountDestroyed), got.Status.Accounts[0].LastError)
		Expect(readyReason(got)).To(Equal(v1alpha1.ReasonResynced))
		Expect(got.Status.DestroyedAccounts).To(BeEquivalentTo(1))
		Expect(got.Status.FailingAccounts).To(BeZero())
	})
})
