package controllers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// The broker is kfake, franz-go's in-process Kafka cluster, speaking the real wire
// protocol: no Kafka broker can run on the build machine.
var _ = Describe("A Kafka sink, end to end", func() {
	const topic = "officialaccount-subscribers"

	startBroker := func(opts ...kfake.Opt) *kfake.Cluster {
		cluster, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, topic)}, opts...)...)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cluster.Close)
		return cluster
	}
	kafkaSink := func(name, account string, dest *v1alpha1.KafkaDestination) *v1alpha1.SubscriptionSink {
		sink := &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: eventNamespace},
			Spec: v1alpha1.SubscriptionSinkSpec{OfficialAccounts: []string{account}, Kafka: dest}}
		Expect(k8s.Create(context.Background(), sink)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), sink) })
		return sink
	}

	It("produces each webhook event, keyed by its account, after logging in with SCRAM", func() {
		cluster := startBroker(kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "operator", "s3cret"))
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kafka-login", Namespace: eventNamespace, Labels: sinkCredentials},
			StringData: map[string]string{"username": "operator", "password": "s3cret"}}
		Expect(k8s.Create(context.Background(), secret)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
		account := uniqueAccount()
		sink := kafkaSink("ckafka", account, &v1alpha1.KafkaDestination{Brokers: cluster.ListenAddrs(), Topic: topic,
			SASL: &v1alpha1.KafkaSASL{Mechanism: "SCRAM-SHA-512", CredentialsSecretRef: corev1.LocalObjectReference{Name: "kafka-login"}}})
		Eventually(sinkNotReady(sink), time.Minute).Should(BeEmpty())
		sinkObserved(sink)

		status, answer := post(query(plainApp, webhookserver.CommandAfterAddSubscriber),
			callback(webhookserver.CommandAfterAddSubscriber, account, time.Now().UnixMilli(), "jared", "leckie"))
		Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		sub := onlySubscription(account)
		waitFor(sub.Name, isReady)

		consumer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.SASL(scramLogin("operator", "s3cret")))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(consumer.Close)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		records := consumer.PollFetches(ctx).Records()
		Expect(records).To(HaveLen(1))
		headers := map[string]string{}
		for _, h := range records[0].Headers {
			headers[h.Key] = string(h.Value)
		}
		Expect(string(records[0].Key)).To(Equal(account))
		Expect(headers).To(HaveKeyWithValue("ce_id", sub.Name))
		Expect(headers).To(HaveKeyWithValue("ce_type", "dev.chat-operators.officialaccount.subscribed"))
		var spec v1alpha1.OfficialAccountSubscriptionSpec
		Expect(json.Unmarshal(records[0].Value, &spec)).To(Succeed())
		Expect(spec.Subscribers).To(Equal([]string{"jared", "leckie"}))
	})

	It("is Ready=False CheckFailed for a topic that does not exist, or a refused login", func() {
		cluster := startBroker(kfake.EnableSASL(), kfake.Superuser("PLAIN", "operator", "right"))
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kafka-wrong-login", Namespace: eventNamespace, Labels: sinkCredentials},
			StringData: map[string]string{"username": "operator", "password": "wrong"}}
		Expect(k8s.Create(context.Background(), secret)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
		refused := kafkaSink("ckafka-refused", uniqueAccount(), &v1alpha1.KafkaDestination{Brokers: cluster.ListenAddrs(), Topic: topic,
			SASL:    &v1alpha1.KafkaSASL{Mechanism: "PLAIN", CredentialsSecretRef: corev1.LocalObjectReference{Name: "kafka-wrong-login"}},
			Timeout: &metav1.Duration{Duration: 2 * time.Second}})
		Eventually(sinkNotReady(refused), time.Minute).Should(HavePrefix(v1alpha1.ReasonCheckFailed + ": "))
		Expect(sinkNotReady(refused)()).NotTo(ContainSubstring("wrong"), "the password is not shown")

		plain := startBroker()
		missing := kafkaSink("ckafka-no-topic", uniqueAccount(), &v1alpha1.KafkaDestination{Brokers: plain.ListenAddrs(), Topic: "no-such-topic"})
		Eventually(sinkNotReady(missing), time.Minute).Should(And(HavePrefix(v1alpha1.ReasonCheckFailed+": "), ContainSubstring("no-such-topic")))
	})
})

func scramLogin(user, password string) sasl.Mechanism {
	return scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
}
