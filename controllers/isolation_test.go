package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// sendEvents stores n events of the account, one callback each, from 8 senders at once.
func sendEvents(account string, n int) {
	GinkgoHelper()
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer GinkgoRecover()
			for i := w; i < n; i += 8 {
				status, answer := post(query(plainApp, webhookserver.CommandAfterAddSubscriber),
					callback(webhookserver.CommandAfterAddSubscriber, account, time.Now().UnixMilli(), fmt.Sprintf("member-%d", i)))
				if status != http.StatusOK {
					errs <- answer.ErrorInfo
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	Expect(errs).To(BeEmpty(), "every callback is stored")
}

// timeToReceive sends n events and returns how long until the receiver had them all.
func timeToReceive(account string, n int, receiver *testenv.Receiver) time.Duration {
	GinkgoHelper()
	start := time.Now()
	sendEvents(account, n)
	Eventually(func() int { return len(receiver.Requests()) }, time.Minute).Should(BeNumerically(">=", n))
	return time.Since(start)
}

var _ = Describe("Sinks isolated from each other", func() {
	It("delivers every event to a healthy sink while another sink holds every delivery it is given", func() {
		const events = 200
		healthy := testenv.NewReceiver()
		DeferCleanup(healthy.Close)
		hung := testenv.NewHungReceiver()
		DeferCleanup(hung.Close)
		account := uniqueAccount()
		newSink("pace-healthy", account, healthy)
		// The hung sink's deliveries end only at its timeout, far past this test: had the
		// healthy sink shared its lanes, its events would wait behind them.
		newSink("pace-hung", account, &testenv.Receiver{Server: hung.Server}, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.MaxInFlight = ptr.To[int32](2)
			s.Spec.HTTP.Timeout = &metav1.Duration{Duration: 10 * time.Minute}
		})
		took := timeToReceive(account, events, healthy)
		GinkgoWriter.Printf("%d events to a healthy sink beside a hung one in %v\n", events, took)

		started, mostAtOnce := hung.Stats()
		Expect(started).To(BeNumerically("<=", 2), "a hung delivery ended before the healthy sink had every event")
		Eventually(func() int { started, _ := hung.Stats(); return started }).Should(BeNumerically(">=", 1), "the hung sink was never delivered to")
		Expect(mostAtOnce).To(BeNumerically("<=", 2), "the hung sink held more deliveries than its maxInFlight")
		Expect(healthy.Requests()).To(HaveLen(events), "the healthy sink received an event twice")
	})

	It("times out a PostgreSQL server that accepts connections but never answers, retries, and leaves other sinks alone", func() {
		pg, err := testenv.StartPostgres()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(pg.Destroy)
		account := uniqueAccount()
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "frozen-dsn", Namespace: eventNamespace, Labels: sinkCredentials},
			StringData: map[string]string{"dsn": pg.DSN(pg.Password)},
		}
		Expect(k8s.Create(context.Background(), secret)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
		healthy := testenv.NewReceiver()
		DeferCleanup(healthy.Close)
		newSink("frozen-db", account, healthy, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.HTTP = nil
			s.Spec.Postgres = &v1alpha1.PostgresDestination{
				DSNSecretRef: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "frozen-dsn"}, Key: "dsn"},
				Timeout:      &metav1.Duration{Duration: 2 * time.Second},
			}
			// Retries stay close together however long the freeze lasts on a slow machine,
			// so that the wait after the thaw does not depend on how far backoff grew.
			s.Spec.Retry.MaxInterval = &metav1.Duration{Duration: 2 * time.Second}
		})
		newSink("beside-frozen-db", account, healthy)

		Expect(pg.Freeze()).To(Succeed())
		thawed := false
		DeferCleanup(func() {
			if !thawed {
				_ = pg.Thaw()
			}
		})
		const events = 10
		sendEvents(account, events)
		Eventually(func() int { return len(healthy.Requests()) }).Should(Equal(events), "the frozen database held up the HTTP sink")

		// Every event's PostgreSQL delivery timed out and waits for its retry.
		Eventually(func() map[string]string { return deliveriesOf(account, timedOut) }, time.Minute).
			Should(HaveLen(events), "a delivery to the frozen database did not time out")

		Expect(pg.Thaw()).To(Succeed())
		thawed = true
		Eventually(func() map[string]string { return deliveriesOf(account, notReady) }, time.Minute).
			Should(BeEmpty(), "the retries did not deliver once the database answered")
	})
})

// timedOut is a delivery to the frozen database that failed at least once and waits for
// its retry.
func timedOut(_ *v1alpha1.OfficialAccountSubscription, d v1alpha1.SinkDelivery) bool {
	return d.Name == "frozen-db" && d.State == v1alpha1.DeliveryPending && d.Attempts >= 1 && d.LastError != ""
}

// notReady is a delivery of an event that is not Ready yet.
func notReady(sub *v1alpha1.OfficialAccountSubscription, _ v1alpha1.SinkDelivery) bool {
	return !isReady(sub)
}

// deliveriesOf describes, by event, the account's deliveries that match, so that a
// failed wait shows where each one stands.
func deliveriesOf(account string, match func(*v1alpha1.OfficialAccountSubscription, v1alpha1.SinkDelivery) bool) map[string]string {
	GinkgoHelper()
	found := map[string]string{}
	for _, sub := range subscriptionsOf(account) {
		for _, d := range sub.Status.Sinks {
			if match(&sub, d) {
				found[sub.Name] += fmt.Sprintf("[%s: %s after %d attempts, next at %v: %s] ",
					d.Name, d.State, d.Attempts, d.NextAttemptTime, d.LastError)
			}
		}
	}
	return found
}
