package controllers_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// signed adds Tencent's authentication parameters for a request made at requestTime.
func signed(q url.Values, token string, requestTime time.Time) url.Values {
	ts := strconv.FormatInt(requestTime.Unix(), 10)
	sum := sha256.Sum256([]byte(token + ts))
	q.Set("Sign", hex.EncodeToString(sum[:]))
	q.Set("RequestTime", ts)
	return q
}

var _ = Describe("The webhook server", func() {
	var account string
	BeforeEach(func() { account = uniqueAccount() })
	addBody := func() []byte {
		return callback(webhookserver.CommandAfterAddSubscriber, account, time.Now().UnixMilli(), "jared")
	}
	addQuery := func(app string) url.Values { return query(app, webhookserver.CommandAfterAddSubscriber) }

	DescribeTable("rejects requests it must not store, with Tencent's JSON and a clear reason",
		func(makeQuery func() url.Values, makeBody func() []byte, wantStatus int, wantInfo string) {
			status, answer := post(makeQuery(), makeBody())
			Expect(status).To(Equal(wantStatus))
			Expect(answer.ActionStatus).To(Equal("FAIL"))
			Expect(answer.ErrorCode).To(Equal(wantStatus))
			Expect(answer.ErrorInfo).To(ContainSubstring(wantInfo))
			Consistently(func() []v1alpha1.OfficialAccountSubscription { return subscriptionsOf(account) }, time.Second).Should(BeEmpty())
		},
		Entry("an SDKAppID that is not ours", func() url.Values { return addQuery("1400009999") }, addBody,
			http.StatusForbidden, `SdkAppid "1400009999" is not an app this operator accepts`),
		Entry("no SDKAppID", func() url.Values { q := addQuery(""); q.Del("SdkAppid"); return q }, addBody,
			http.StatusForbidden, "SdkAppid is missing"),
		Entry("an app with authentication, unsigned", func() url.Values { return addQuery(signedApp) }, addBody,
			http.StatusUnauthorized, "Sign and RequestTime are required"),
		Entry("a Sign made with another token", func() url.Values { return signed(addQuery(signedApp), "wrong-token", time.Now()) }, addBody,
			http.StatusUnauthorized, "Sign does not match"),
		Entry("a stale Sign", func() url.Values { return signed(addQuery(signedApp), signedAppToken, time.Now().Add(-2*time.Minute)) }, addBody,
			http.StatusUnauthorized, "from the server's clock"),
		Entry("a body that is not JSON", func() url.Values { return addQuery(plainApp) }, func() []byte { return []byte(`{"CallbackCommand": `) },
			http.StatusBadRequest, "body is not valid JSON"),
		Entry("an empty Official_Account", func() url.Values { return addQuery(plainApp) },
			func() []byte { return callback(webhookserver.CommandAfterAddSubscriber, "", 1, "jared") },
			http.StatusBadRequest, "Official_Account is empty"),
		Entry("an empty subscriber list", func() url.Values { return addQuery(plainApp) },
			func() []byte { return callback(webhookserver.CommandAfterAddSubscriber, account, 1) },
			http.StatusBadRequest, "SubscribeAccountList is empty"),
		Entry("a subscriber ID over Tencent's 32 bytes", func() url.Values { return addQuery(plainApp) },
			func() []byte {
				return callback(webhookserver.CommandAfterAddSubscriber, account, 1, strings.Repeat("x", 33))
			},
			http.StatusBadRequest, "Tencent allows at most 32"),
		Entry("a ClientIP longer than any IP address", func() url.Values { q := addQuery(plainApp); q.Set("ClientIP", strings.Repeat("1", 46)); return q },
			addBody, http.StatusBadRequest, "ClientIP is 46 bytes"),
		Entry("more subscribers than one callback may store", func() url.Values { return addQuery(plainApp) },
			func() []byte {
				subscribers := make([]string, maxResourcesPerCallback*v1alpha1.MaxSubscribersPerResource+1)
				for i := range subscribers {
					subscribers[i] = fmt.Sprintf("u%d", i)
				}
				return callback(webhookserver.CommandAfterAddSubscriber, account, 1, subscribers...)
			},
			http.StatusRequestEntityTooLarge, "at most 1500 are stored from one callback"),
		Entry("a command in the query that the body contradicts", func() url.Values { return query(plainApp, webhookserver.CommandAfterDeleteSubscriber) }, addBody,
			http.StatusBadRequest, "does not match"),
		Entry("a body over the limit", func() url.Values { return addQuery(plainApp) },
			func() []byte {
				return []byte(fmt.Sprintf(`{"CallbackCommand":%q,"Official_Account":%q,"Padding":%q}`,
					webhookserver.CommandAfterAddSubscriber, account, strings.Repeat("x", maxBodyBytes)))
			},
			http.StatusRequestEntityTooLarge, "larger than 65536 bytes"),
	)

	It("answers 405 to anything but POST", func() {
		resp, err := http.Get(webhookURL + "?" + addQuery(plainApp).Encode())
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusMethodNotAllowed))
		Expect(resp.Header.Get("Allow")).To(Equal("POST"))
	})

	It("stores a correctly signed request from an app with authentication", func() {
		status, answer := post(signed(addQuery(signedApp), signedAppToken, time.Now()), addBody())
		Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
		Expect(onlySubscription(account).Spec.SDKAppID).To(Equal(signedApp))
	})

	It("answers a flood of 1,000 unsigned requests for an app with authentication with 401, storing nothing", func() {
		const requests, senders = 1000, 16
		statuses := make(chan int, requests)
		var wg sync.WaitGroup
		for w := range senders {
			wg.Go(func() {
				defer GinkgoRecover()
				for i := w; i < requests; i += senders {
					body := callback(webhookserver.CommandAfterAddSubscriber, account, time.Now().UnixMilli(), fmt.Sprintf("user%d", i))
					resp, err := http.Post(webhookURL+"?"+addQuery(signedApp).Encode(), "application/json", bytes.NewReader(body))
					Expect(err).NotTo(HaveOccurred())
					resp.Body.Close()
					statuses <- resp.StatusCode
				}
			})
		}
		wg.Wait()
		close(statuses)
		count := 0
		for status := range statuses {
			Expect(status).To(Equal(http.StatusUnauthorized))
			count++
		}
		Expect(count).To(Equal(requests))
		Expect(subscriptionsOf(account)).To(BeEmpty())
	})

	It("accepts the SdkAppId spelling of the newer product page", func() {
		q := addQuery(plainApp)
		q.Del("SdkAppid")
		q.Set("SdkAppId", plainApp)
		status, _ := post(q, addBody())
		Expect(status).To(Equal(http.StatusOK))
		Expect(onlySubscription(account).Spec.SDKAppID).To(Equal(plainApp))
	})

	It("acknowledges other Official Account commands and stores nothing", func() {
		command := "OfficialAccount.CallbackAfterCreateOfficialAccount"
		status, answer := post(query(plainApp, command), testenv.Fixture("after-create-official-account.json"))
		Expect(status).To(Equal(http.StatusOK))
		Expect(answer).To(Equal(tencentAnswer{ActionStatus: "OK"}))
		Consistently(func() []v1alpha1.OfficialAccountSubscription {
			return filterCommand(subscriptionsOf("@TOA#_test_for_penn"), command)
		}, time.Second).Should(BeEmpty())
	})

	It("stores the unsubscribe callback with action Unsubscribe", func() {
		status, _ := post(query(plainApp, webhookserver.CommandAfterDeleteSubscriber), testenv.Fixture("after-delete-subscriber.json"))
		Expect(status).To(Equal(http.StatusOK))
		subs := filterCommand(subscriptionsOf("@TOA#_test_for_penn"), webhookserver.CommandAfterDeleteSubscriber)
		Expect(subs).To(HaveLen(1))
		Expect(subs[0].Spec.Action).To(Equal(v1alpha1.ActionUnsubscribe))
		Expect(subs[0].Spec.Subscribers).To(Equal([]string{"jared"}))
		Expect(subs[0].Spec.EventTime).To(Equal(int64(1670574499000)))
		Expect(subs[0].Labels).To(HaveKeyWithValue(v1alpha1.LabelAction, "Unsubscribe"))
	})

	It("splits an event with more subscribers than one resource holds, losing none", func() {
		receiver := testenv.NewReceiver()
		DeferCleanup(receiver.Close)
		newSink("split", account, receiver)
		subscribers := make([]string, 1201)
		for i := range subscribers {
			subscribers[i] = fmt.Sprintf("user-%04d", i)
		}
		status, answer := post(query(plainApp, webhookserver.CommandAfterAddSubscriber),
			callback(webhookserver.CommandAfterAddSubscriber, account, time.Now().UnixMilli(), subscribers...))
		Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)

		subs := subscriptionsOf(account)
		Expect(subs).To(HaveLen(3))
		parts := map[string][]string{}
		for _, s := range subs {
			parts[s.Annotations[v1alpha1.AnnotationPart]] = s.Spec.Subscribers
		}
		Expect(parts).To(HaveLen(3))
		Expect(parts["1/3"]).To(Equal(subscribers[:500]))
		Expect(parts["2/3"]).To(Equal(subscribers[500:1000]))
		Expect(parts["3/3"]).To(Equal(subscribers[1000:]))
		Eventually(func() int { return len(receiver.Requests()) }).Should(Equal(3))
	})
})
