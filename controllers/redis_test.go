package controllers_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

var _ = Describe("A Redis sink, end to end", func() {
	redisSink := func(name, account, url string) *v1alpha1.SubscriptionSink {
		return sinkWithSecret(name, "url", url, func(ref corev1.SecretKeySelector) v1alpha1.SubscriptionSinkSpec {
			return v1alpha1.SubscriptionSinkSpec{OfficialAccounts: []string{account}, Redis: &v1alpha1.RedisDestination{
				URLSecretRef: ref, Timeout: &metav1.Duration{Duration: 2 * time.Second}}}
		})
	}

	It("keeps each account's set of subscribers in step with the webhook's events", func() {
		srv := testenv.StartRedis(GinkgoTB())
		account := uniqueAccount()
		sink := redisSink("redis-mirror", account, srv.URL(srv.Password))
		Eventually(sinkNotReady(sink), time.Minute).Should(BeEmpty())
		sinkObserved(sink)

		subscribeThenUnsubscribe(account)
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
