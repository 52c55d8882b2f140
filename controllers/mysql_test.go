package controllers_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

var _ = Describe("A MySQL sink, end to end", func() {
	mysqlSink := func(name, account, dsn string) *v1alpha1.SubscriptionSink {
		return sinkWithSecret(name, "dsn", dsn, func(ref corev1.SecretKeySelector) v1alpha1.SubscriptionSinkSpec {
			return v1alpha1.SubscriptionSinkSpec{OfficialAccounts: []string{account}, MySQL: &v1alpha1.MySQLDestination{
				DSNSecretRef: ref, Timeout: &metav1.Duration{Duration: 2 * time.Second}}}
		})
	}

	It("keeps a table of who follows which account in step with the webhook's events", func() {
		srv := testenv.StartMariaDB(GinkgoTB())
		account := uniqueAccount()
		sink := mysqlSink("mysql-mirror", account, srv.DSN(srv.Password))
		Eventually(sinkNotReady(sink), time.Minute).Should(BeEmpty())
		sinkObserved(sink)

		subscribeThenUnsubscribe(account)
		db := srv.DB(GinkgoTB())
		Eventually(func() (map[string]bool, error) {
			rows, err := db.Query("SELECT subscriber, subscribed FROM officialaccount_subscribers WHERE sdk_app_id = ? AND official_account = ?",
				plainApp, account)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			got := map[string]bool{}
			for rows.Next() {
				var subscriber string
				var subscribed bool
				if err := rows.Scan(&subscriber, &subscribed); err != nil {
					return nil, err
				}
				got[subscriber] = subscribed
			}
			return got, rows.Err()
		}, time.Minute).Should(Equal(map[string]bool{"jared": false, "leckie": true}))
	})

	It("is Ready=False CheckFailed for a refused password, which it does not show", func() {
		srv := testenv.StartMariaDB(GinkgoTB())
		sink := mysqlSink("mysql-refused", uniqueAccount(), srv.DSN("not-the-password"))
		Eventually(sinkNotReady(sink), time.Minute).Should(HavePrefix(v1alpha1.ReasonCheckFailed + ": "))
		Expect(sinkNotReady(sink)()).NotTo(ContainSubstring("not-the-password"))
	})
})
