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

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

var _ = Describe("A NATS JetStream sink, end to end", func() {
	It("publishes each webhook event once to the stream", func() {
		srv := testenv.StartNATS(GinkgoTB(), "")
		conn, err := nats.Connect(srv.ClientURL())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		js, err := jetstream.New(conn)
		Expect(err).NotTo(HaveOccurred())
		stream, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"officialaccount.>"}})
		Expect(err).NotTo(HaveOccurred())

		account := uniqueAccount()
		sink := &v1alpha1.SubscriptionSink{
			ObjectMeta: metav1.ObjectMeta{Name: "broker", Namespace: eventNamespace},
			Spec: v1alpha1.SubscriptionSinkSpec{OfficialAccounts: []string{account},
				NATS: &v1alpha1.NATSDestination{URL: srv.ClientURL()}},
		}
		Expect(k8s.Create(context.Background(), sink)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), sink) })

		status, answer := post(query(plainApp, webhookserver.CommandAfterDeleteSubscriber),
			callback(webhookserver.CommandAfterDeleteSubscriber, account, time.Now().UnixMilli(), "jared"))
		Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		sub := onlySubscription(account)
		waitFor(sub.Name, isReady)

		info, err := stream.Info(context.Background())
		Expect(err).NotTo(HaveOccurred())
		Expect(info.State.Msgs).To(BeEquivalentTo(1))
		msg, err := stream.GetMsg(context.Background(), 1)
		Expect(err).NotTo(HaveOccurred())
		Expect(msg.Subject).To(Equal("officialaccount.unsubscribe"))
		Expect(msg.Header.Get("Nats-Msg-Id")).To(Equal(sub.Name))
		var ce struct {
			ID   string
			Type string
			Data v1alpha1.OfficialAccountSubscriptionSpec
		}
		Expect(json.Unmarshal(msg.Data, &ce)).To(Succeed())
		Expect(ce.ID).To(Equal(sub.Name))
		Expect(ce.Type).To(Equal("dev.chat-operators.officialaccount.unsubscribed"))
		Expect(ce.Data.Subscribers).To(Equal([]string{"jared"}))
	})
})
