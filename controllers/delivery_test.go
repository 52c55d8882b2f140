package controllers_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

func init() {
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
}

func readyCondition(sub *v1alpha1.OfficialAccountSubscription) *metav1.Condition {
	return meta.FindStatusCondition(sub.Status.Conditions, v1alpha1.ConditionReady)
}

// onlySubscription waits for exactly one stored event of the account and returns it.
func onlySubscription(account string) v1alpha1.OfficialAccountSubscription {
	GinkgoHelper()
	var subs []v1alpha1.OfficialAccountSubscription
	Eventually(func() []v1alpha1.OfficialAccountSubscription {
		subs = subscriptionsOf(account)
		return subs
	}).Should(HaveLen(1))
	return subs[0]
}

// waitFor polls the event until check accepts it, and returns it.
func waitFor(name string, check func(*v1alpha1.OfficialAccountSubscription) bool) *v1alpha1.OfficialAccountSubscription {
	GinkgoHelper()
	sub := &v1alpha1.OfficialAccountSubscription{}
	Eventually(func() bool {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: eventNamespace, Name: name}, sub); err != nil {
			return false
		}
		return check(sub)
	}).Should(BeTrue(), "event %s never reached the expected status", name)
	return sub
}

func isReady(sub *v1alpha1.OfficialAccountSubscription) bool {
	return meta.IsStatusConditionTrue(sub.Status.Conditions, v1alpha1.ConditionReady)
}

var _ = Describe("The seed's sample request, end to end", func() {
	It("stores exactly the sample's fields, delivers a signed CloudEvent, and becomes Ready", func() {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "seed-signing", Namespace: eventNamespace, Labels: sinkCredentials},
			Data:       map[string][]byte{"secret": []byte("whsec_" + base64.StdEncoding.EncodeToString(key))},
		}
		Expect(k8s.Create(context.Background(), secret)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
		receiver := testenv.NewReceiver()
		DeferCleanup(receiver.Close)
		newSink("seed", "@TOA#_test_for_penn", receiver, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.Actions = []v1alpha1.Action{v1alpha1.ActionSubscribe}
			s.Spec.HTTP.SigningSecretRef = &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "seed-signing"}, Key: "secret"}
		})

		status, answer := post(query(plainApp, webhookserver.CommandAfterAddSubscriber), testenv.Fixture("after-add-subscriber.json"))
		Expect(status).To(Equal(http.StatusOK))
		Expect(answer).To(Equal(tencentAnswer{ActionStatus: "OK"}))

		// The answer came after the store: the resource is there at once.
		subs := subscriptionsOf("@TOA#_test_for_penn")
		subs = filterCommand(subs, webhookserver.CommandAfterAddSubscriber)
		Expect(subs).To(HaveLen(1))
		sub := subs[0]
		Expect(sub.Spec.ReceivedTime.IsZero()).To(BeFalse())
		sub.Spec.ReceivedTime = metav1.Time{}
		Expect(sub.Spec).To(Equal(v1alpha1.OfficialAccountSubscriptionSpec{
			SDKAppID:        plainApp,
			CallbackCommand: "OfficialAccount.CallbackAfterAddSubscriber",
			Action:          v1alpha1.ActionSubscribe,
			OfficialAccount: "@TOA#_test_for_penn",
			OperatorAccount: "107867",
			Subscribers:     []string{"jared", "leckie"},
			SubscriberCount: 2,
			EventTime:       1670574414123,
			ClientIP:        "127.0.0.1",
			OptPlatform:     "RESTAPI",
		}))
		Expect(sub.Labels).To(HaveKeyWithValue(v1alpha1.LabelSDKAppID, plainApp))
		Expect(sub.Labels).To(HaveKeyWithValue(v1alpha1.LabelAction, "Subscribe"))

		done := waitFor(sub.Name, isReady)
		Expect(readyCondition(done).Reason).To(Equal(v1alpha1.ReasonDelivered))
		Expect(done.Status.CompletionTime).NotTo(BeNil())
		Expect(done.Status.Sinks).To(HaveLen(1))
		Expect(done.Status.Sinks[0].Name).To(Equal("seed"))
		Expect(done.Status.Sinks[0].State).To(Equal(v1alpha1.DeliveryDelivered))
		Expect(done.Status.Sinks[0].Attempts).To(BeEquivalentTo(1))

		Expect(receiver.Requests()).To(HaveLen(1))
		req := receiver.Requests()[0]
		Expect(req.Header.Get("ce-specversion")).To(Equal("1.0"))
		Expect(req.Header.Get("ce-id")).To(Equal(sub.Name))
		Expect(req.Header.Get("ce-type")).To(Equal("dev.chat-operators.officialaccount.subscribed"))
		Expect(req.Header.Get("ce-source")).To(Equal("/tencent-cloud-chat/" + plainApp))
		Expect(req.Header.Get("ce-subject")).To(Equal("@TOA#_test_for_penn"))
		Expect(req.Header.Get("ce-time")).To(Equal("2022-12-09T08:26:54.123Z"))
		Expect(req.Header.Get("Content-Type")).To(Equal("application/json"))
		var data v1alpha1.OfficialAccountSubscriptionSpec
		Expect(json.Unmarshal(req.Body, &data)).To(Succeed())
		Expect(data.Subscribers).To(Equal([]string{"jared", "leckie"}))
		Expect(data.OfficialAccount).To(Equal("@TOA#_test_for_penn"))

		// Standard Webhooks, verified here independently of the operator's code.
		Expect(req.Header.Get("webhook-id")).To(Equal(sub.Name))
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(req.Header.Get("webhook-id") + "." + req.Header.Get("webhook-timestamp") + "."))
		mac.Write(req.Body)
		Expect(req.Header.Get("webhook-signature")).To(Equal("v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))))

		// Events are recorded in the background, so the Event may come a moment after Ready.
		Eventually(func(g Gomega) []eventsv1.Event {
			var events eventsv1.EventList
			g.Expect(k8s.List(context.Background(), &events, client.InNamespace(eventNamespace))).To(Succeed())
			return events.Items
		}).Should(ContainElement(SatisfyAll(
			HaveField("Regarding.Name", sub.Name), HaveField("Reason", v1alpha1.ReasonDelivered))))
	})
})

func filterCommand(subs []v1alpha1.OfficialAccountSubscription, command string) []v1alpha1.OfficialAccountSubscription {
	var out []v1alpha1.OfficialAccountSubscription
	for _, s := range subs {
		if s.Spec.CallbackCommand == command {
			out = append(out, s)
		}
	}
	return out
}

var _ = Describe("Delivery", func() {
	var (
		account  string
		receiver *testenv.Receiver
	)
	BeforeEach(func() { account, receiver = accountWithReceiver() })
	send := func(subscribers ...string) { subscribe(account, subscribers...) }

	It("stores and delivers the same request sent twice only once", func() {
		newSink("twice", account, receiver)
		body := callback(webhookserver.CommandAfterAddSubscriber, account, 1670574414123, "jared")
		for range 2 {
			status, answer := post(query(plainApp, webhookserver.CommandAfterAddSubscriber), body)
			Expect(status).To(Equal(http.StatusOK))
			Expect(answer.ActionStatus).To(Equal("OK"))
		}
		sub := onlySubscription(account)
		waitFor(sub.Name, isReady)
		Consistently(func() int { return len(receiver.Requests()) }, 2*time.Second).Should(Equal(1))
		Expect(subscriptionsOf(account)).To(HaveLen(1))
	})

	It("retries a sink that answers 503 twice and delivers on attempt 3", func() {
		receiver.Answer(http.StatusServiceUnavailable, http.StatusServiceUnavailable)
		newSink("flaky", account, receiver)
		send("jared")
		sub := onlySubscription(account)

		done := waitFor(sub.Name, isReady)
		Expect(done.Status.Sinks[0].Attempts).To(BeEquivalentTo(3))
		// Backoff: 1 s after the first failure, 2 s after the second (times are stored to the second).
		Expect(done.Status.Sinks[0].LastAttemptTime.Sub(done.Status.Sinks[0].FirstAttemptTime.Time)).
			To(BeNumerically(">=", 2*time.Second), "the attempts did not back off")
		Expect(done.Status.Sinks[0].DeliveredTime).NotTo(BeNil())
		Expect(done.Status.Sinks[0].LastError).To(BeEmpty())
		Expect(meta.FindStatusCondition(done.Status.Conditions, v1alpha1.ConditionReconciling)).To(BeNil())
		requests := receiver.Requests()
		Expect(requests).To(HaveLen(3))
		for _, r := range requests {
			Expect(r.Header.Get("ce-id")).To(Equal(sub.Name), "every attempt carries the same idempotency key")
		}
	})

	It("fails a delivery the sink rejects with 400 at once, and sends it again on the retry annotation", func() {
		receiver.Answer(http.StatusBadRequest)
		newSink("rejecting", account, receiver)
		send("jared")
		sub := onlySubscription(account)

		failed := waitFor(sub.Name, func(s *v1alpha1.OfficialAccountSubscription) bool {
			return meta.IsStatusConditionTrue(s.Status.Conditions, v1alpha1.ConditionStalled)
		})
		Expect(failed.Status.Sinks[0].State).To(Equal(v1alpha1.DeliveryFailed))
		Expect(failed.Status.Sinks[0].Attempts).To(BeEquivalentTo(1))
		Expect(failed.Status.Sinks[0].LastError).To(ContainSubstring("400"))
		ready := readyCondition(failed)
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Reason).To(Equal(v1alpha1.ReasonDeliveryFailed))
		Expect(ready.Message).To(ContainSubstring("400"))
		Expect(failed.Status.CompletionTime).NotTo(BeNil())
		Consistently(func() int { return len(receiver.Requests()) }, 3*time.Second).Should(Equal(1), "a rejected event is not retried")

		patch := client.MergeFrom(failed.DeepCopy())
		failed.Annotations = map[string]string{v1alpha1.AnnotationRetry: "first-retry"}
		Expect(k8s.Patch(context.Background(), failed, patch)).To(Succeed())

		done := waitFor(sub.Name, isReady)
		Expect(done.Status.Sinks[0].State).To(Equal(v1alpha1.DeliveryDelivered))
		Expect(done.Status.Sinks[0].Attempts).To(BeEquivalentTo(1), "the retry starts a new round")
		Expect(meta.FindStatusCondition(done.Status.Conditions, v1alpha1.ConditionStalled)).To(BeNil())
		Expect(done.Status.LastHandledRetry).To(Equal("first-retry"))
		Expect(receiver.Requests()).To(HaveLen(2))
	})

	It("deletes delivered events once their retention has passed", func() {
		newSink("retained", account, receiver)
		send("jared")
		sub := onlySubscription(account)
		waitFor(sub.Name, isReady)
		Eventually(func() []v1alpha1.OfficialAccountSubscription { return subscriptionsOf(account) }).
			WithTimeout(retention + 15*time.Second).Should(BeEmpty())
	})

	It("holds deliveries to a suspended sink and delivers them when it resumes", func() {
		sink := newSink("suspended", account, receiver, func(s *v1alpha1.SubscriptionSink) { s.Spec.Suspend = true })
		send("jared")
		sub := onlySubscription(account)
		waitFor(sub.Name, func(s *v1alpha1.OfficialAccountSubscription) bool {
			c := readyCondition(s)
			return c != nil && c.Reason == v1alpha1.ReasonDelivering
		})
		Consistently(func() int { return len(receiver.Requests()) }, 2*time.Second).Should(BeZero())

		patch := client.MergeFrom(sink.DeepCopy())
		sink.Spec.Suspend = false
		Expect(k8s.Patch(context.Background(), sink, patch)).To(Succeed())
		waitFor(sub.Name, isReady)
		Expect(receiver.Requests()).To(HaveLen(1))
	})

	It("reports a sink whose signing Secret is missing, and delivers once the Secret exists", func() {
		sink := newSink("unsigned", account, receiver, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.HTTP.SigningSecretRef = &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "late-secret"}, Key: "secret"}
		})
		Eventually(sinkNotReady(sink)).Should(Equal(`SecretNotFound: Secret "late-secret" does not exist in namespace "events"`))

		send("jared")
		sub := onlySubscription(account)
		waitFor(sub.Name, func(s *v1alpha1.OfficialAccountSubscription) bool {
			return len(s.Status.Sinks) == 1 && s.Status.Sinks[0].Attempts >= 1
		})
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "late-secret", Namespace: eventNamespace, Labels: sinkCredentials},
			Data:       map[string][]byte{"secret": []byte("whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 24)))},
		}
		Expect(k8s.Create(context.Background(), secret)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
		Eventually(func() bool {
			var got v1alpha1.SubscriptionSink
			_ = k8s.Get(context.Background(), client.ObjectKeyFromObject(sink), &got)
			return meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionReady)
		}).Should(BeTrue())
		waitFor(sub.Name, isReady)
		Expect(receiver.Requests()).NotTo(BeEmpty())
		Expect(receiver.Requests()[0].Header.Get("webhook-signature")).To(HavePrefix("v1,"))
	})

	It("refuses a sink's Secret without the sink-credentials label, sends nothing, and delivers once it is labelled", func() {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "unlabelled-secret", Namespace: eventNamespace},
			Data:       map[string][]byte{"secret": []byte("whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 24)))},
		}
		Expect(k8s.Create(context.Background(), secret)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
		sink := newSink("unlabelled", account, receiver, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.HTTP.SigningSecretRef = &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: secret.Name}, Key: "secret"}
		})
		Eventually(sinkNotReady(sink)).Should(And(HavePrefix(v1alpha1.ReasonSecretNotAllowed+": "), ContainSubstring(v1alpha1.LabelSinkCredentials+"=true")))

		send("jared")
		sub := onlySubscription(account)
		waitFor(sub.Name, func(s *v1alpha1.OfficialAccountSubscription) bool {
			return len(s.Status.Sinks) == 1 && s.Status.Sinks[0].Attempts >= 1 && strings.Contains(s.Status.Sinks[0].LastError, "lacks the label")
		})
		Expect(receiver.Requests()).To(BeEmpty(), "nothing is sent with a Secret the sink may not use")

		patch := client.MergeFrom(secret.DeepCopy())
		secret.Labels = sinkCredentials
		Expect(k8s.Patch(context.Background(), secret, patch)).To(Succeed())
		waitFor(sub.Name, isReady)
		Expect(receiver.Requests()).To(HaveLen(1))
		Expect(receiver.Requests()[0].Header.Get("webhook-signature")).To(HavePrefix("v1,"))
	})

	It("marks an event that no sink matches Ready with nothing to deliver", func() {
		send("jared")
		sub := onlySubscription(account)
		done := waitFor(sub.Name, isReady)
		Expect(readyCondition(done).Reason).To(Equal(v1alpha1.ReasonNoMatchingSinks))
		Expect(done.Status.Sinks).To(BeEmpty())
	})
})
