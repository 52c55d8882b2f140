package controllers_test

import (
	"context"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

var _ = Describe("A Redis sink, end to end", func() {
	redisSink := func(name, account, url string) *v1alpha1.SubscriptionSink {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-url", Namespace: eventNamespace, Labels: sinkCredentials},
			StringData: map[string]string{"url": url}}
		Expect(k8s.Create(context.Background(), secret)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
		sink := &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: eventNamespace},
			Spec: v1alpha1.SubscriptionSinkSpec{OfficialAccounts: []string{account}, Redis: &v1alpha1.RedisDestination{
				URLSecretRef: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name + "-url"}, Key: "url"},
				Timeout:      &metav1.Duration{Duration: 2 * time.Second}}}}
		Expect(k8s.Create(context.Background(), sink)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), sink) })
		return sink
	}

	It("keeps each account's set of subscribers in step with the webhook's events", func() {
		srv := testenv.StartRedis(GinkgoTB())
		account := uniqueAccount()
		sink := redisSink("redis-mirror", account, srv.URL(srv.Password))
		Eventually(sinkNotReady(sink), time.Minute).Should(BeEmpty())
		sinkObserved(sink)

		now := time.Now().UnixMilli()
		for _, event := range []struct {
			command string
			at      int64
			who     []string
		}{
			{webhookserver.CommandAfterAddSubscriber, now, []string{"jared", "leckie"}},
			{webhookserver.CommandAfterDeleteSubscriber, now + 1000, []string{"jared"}},
		} {
			status, answer := post(query(plainApp, event.command), callback(event.command, account, event.at, event.who...))
			Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		}
		opts, err := redis.ParseURL(srv.URL(srv.Password))
		Expect(err).NotTo(HaveOccurred())
		client := redis.NewClient(opts)
		DeferCleanup(client.Close)
		Eventually(func() ([]string, error) {
			return client.SMembers(context.Background(), "oasub:"+plainApp+":"+account+":subscribers").Result()
		}, time.Minute).Should(ConsistOf("leckie"))
	})

	It("is Ready=False CheckFailed for a refused password, which it does not show", func() {
		srv := testenv.StartRedis(GinkgoTB())
		sink := redisSink("redis-refused", uniqueAccount(), srv.URL("not-the-password"))
		Eventually(sinkNotReady(sink), time.Minute).Should(HavePrefix(v1alpha1.ReasonCheckFailed + ": "))
		Expect(sinkNotReady(sink)()).NotTo(ContainSubstring("not-the-password"))
	})
})
