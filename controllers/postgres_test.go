package controllers_test

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/fakerest"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

var _ = Describe("A PostgreSQL sink, end to end", Ordered, func() {
	var pg *testenv.Postgres
	BeforeAll(func() {
		var err error
		pg, err = testenv.StartPostgres()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(pg.Destroy)
	})

	postgresSink := func(name, account, password string) *v1alpha1.SubscriptionSink {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-dsn", Namespace: eventNamespace, Labels: sinkCredentials},
			StringData: map[string]string{"dsn": pg.DSN(password)},
		}
		Expect(k8s.Create(context.Background(), secret)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
		sink := &v1alpha1.SubscriptionSink{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: eventNamespace},
			Spec: v1alpha1.SubscriptionSinkSpec{
				OfficialAccounts: []string{account},
				Postgres: &v1alpha1.PostgresDestination{DSNSecretRef: corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: name + "-dsn"}, Key: "dsn"}},
			},
		}
		Expect(k8s.Create(context.Background(), sink)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), sink) })
		return sink
	}

	// following reads the table: each subscriber of the account, and whether subscribed.
	following := func(account string) map[string]bool {
		GinkgoHelper()
		conn, err := pgx.Connect(context.Background(), pg.DSN(pg.Password))
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close(context.Background())
		out := map[string]bool{}
		rows, err := conn.Query(context.Background(),
			"SELECT subscriber, subscribed FROM officialaccount_subscribers WHERE official_account = $1", account)
		Expect(err).NotTo(HaveOccurred())
		for rows.Next() {
			var who string
			var subscribed bool
			Expect(rows.Scan(&who, &subscribed)).To(Succeed())
			out[who] = subscribed
		}
		return out
	}

	It("keeps the table of who follows the account in step with the webhooks", func() {
		account := uniqueAccount()
		postgresSink("followers-db", account, pg.Password)
		for _, e := range []struct {
			command     string
			eventTime   int64
			subscribers []string
		}{
			{webhookserver.CommandAfterAddSubscriber, 1670574414123, []string{"jared", "leckie"}},
			{webhookserver.CommandAfterDeleteSubscriber, 1670574499000, []string{"jared"}},
		} {
			status, answer := post(query(plainApp, e.command), callback(e.command, account, e.eventTime, e.subscribers...))
			Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		}
		Eventually(func() int {
			n := 0
			for _, s := range subscriptionsOf(account) {
				if isReady(&s) && readyCondition(&s).Reason == v1alpha1.ReasonDelivered {
					n++
				}
			}
			return n
		}).Should(Equal(2))

		Expect(following(account)).To(Equal(map[string]bool{"jared": false, "leckie": true}))
	})

	It("converges to a resync's snapshot: who left while the webhook was down is unsubscribed, who came after it stays", func() {
		account := uniqueAccount()
		postgresSink("resynced-db", account, pg.Password)
		longAgo, later := time.Now().Add(-time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli()
		for _, e := range []struct {
			eventTime  int64
			subscriber string
		}{{longAgo, "jared"}, {longAgo, "leckie"}, {later, "newcomer"}} {
			status, answer := post(query(plainApp, webhookserver.CommandAfterAddSubscriber),
				callback(webhookserver.CommandAfterAddSubscriber, account, e.eventTime, e.subscriber))
			Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		}
		Eventually(following).WithArguments(account).Should(Equal(map[string]bool{"jared": true, "leckie": true, "newcomer": true}))

		// jared left while the webhook was down: Tencent lists leckie alone. newcomer's
		// callback is later than the listing, which does not show them yet.
		fake, endpoint := tencentREST()
		fake.SetSubscribers(account, []fakerest.Subscriber{{Account: "leckie", SubscribeTime: time.UnixMilli(longAgo)}})
		resyncCondition(newResync("converge", endpoint, restKey, account), v1alpha1.ConditionReady, metav1.ConditionTrue)
		Eventually(following).WithArguments(account).Should(Equal(map[string]bool{"jared": false, "leckie": true, "newcomer": true}))
	})

	It("applies a destroyed account: every member unsubscribed in one statement, a newer event kept", func() {
		account := uniqueAccount()
		postgresSink("destroyed-db", account, pg.Password)
		destroyedAt := time.Now()
		for _, e := range []struct {
			eventTime  int64
			subscriber string
		}{{destroyedAt.Add(-time.Hour).UnixMilli(), "jared"}, {destroyedAt.Add(-time.Minute).UnixMilli(), "leckie"},
			{destroyedAt.Add(time.Minute).UnixMilli(), "after"}} {
			status, answer := post(query(plainApp, webhookserver.CommandAfterAddSubscriber),
				callback(webhookserver.CommandAfterAddSubscriber, account, e.eventTime, e.subscriber))
			Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		}
		Eventually(following).WithArguments(account).Should(Equal(map[string]bool{"jared": true, "leckie": true, "after": true}))
		status, answer := post(query(plainApp, webhookserver.CommandAfterAccountDestroyed), destroyedCallback(account, destroyedAt.UnixMilli()))
		Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		Eventually(following).WithArguments(account).Should(Equal(map[string]bool{"jared": false, "leckie": false, "after": true}))
	})

	It("reports a wrong password on the sink and retries the delivery until the password is mended", func() {
		account := uniqueAccount()
		sink := postgresSink("wrong-password-db", account, "not-the-password")
		Eventually(sinkNotReady(sink)).Should(SatisfyAll(HavePrefix(v1alpha1.ReasonCheckFailed+": "), ContainSubstring("refused the credentials")))

		status, _ := post(query(plainApp, webhookserver.CommandAfterAddSubscriber),
			callback(webhookserver.CommandAfterAddSubscriber, account, time.Now().UnixMilli(), "jared"))
		Expect(status).To(Equal(http.StatusOK))
		sub := onlySubscription(account)
		retrying := waitFor(sub.Name, func(s *v1alpha1.OfficialAccountSubscription) bool {
			return len(s.Status.Sinks) == 1 && s.Status.Sinks[0].Attempts >= 2
		})
		Expect(retrying.Status.Sinks[0].State).To(Equal(v1alpha1.DeliveryPending), "refused credentials are the sink's failure, retried")
		Expect(retrying.Status.Sinks[0].LastError).To(ContainSubstring("refused the credentials"))
		Expect(retrying.Status.Sinks[0].LastError).NotTo(ContainSubstring("not-the-password"))

		var secret corev1.Secret
		Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: eventNamespace, Name: sink.Name + "-dsn"}, &secret)).To(Succeed())
		secret.Data = map[string][]byte{"dsn": []byte(pg.DSN(pg.Password))}
		Expect(k8s.Update(context.Background(), &secret)).To(Succeed())
		waitFor(sub.Name, isReady)
		Expect(following(account)).To(Equal(map[string]bool{"jared": true}), "the password rotated, the event arrives")
	})
})
