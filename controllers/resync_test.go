package controllers_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/fakerest"
)

const (
	restApp   = 1400000000
	restAdmin = "administrator"
	restKey   = "resync-secret-key"
)

// resyncFailureBackoff is the suite's first wait after an account fails.
const resyncFailureBackoff = 500 * time.Millisecond

var (
	restStandIn  *fakerest.Server
	restEndpoint string
)

// startTencentREST serves the suite's stand-in of Tencent's REST API until the process ends.
func startTencentREST() (*fakerest.Server, string) {
	fake := fakerest.New(restApp, restAdmin, restKey)
	return fake, httptest.NewServer(fake).URL
}

// tencentREST is the suite's stand-in; specs use accounts of their own.
func tencentREST() (*fakerest.Server, string) { return restStandIn, restEndpoint }

// members are n subscribers named prefix-0000 on.
func members(prefix string, n int) []fakerest.Subscriber {
	out := make([]fakerest.Subscriber, n)
	for i := range out {
		out[i] = fakerest.Subscriber{Account: fmt.Sprintf("%s-%04d", prefix, i), SubscribeTime: time.Now().Add(-24 * time.Hour)}
	}
	return out
}

// newResync creates the credentials Secret and a resync of the accounts against endpoint.
func newResync(name, endpoint, secretKey string, accounts ...string) *v1alpha1.OfficialAccountResync {
	GinkgoHelper()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-tencent", Namespace: eventNamespace, Labels: sinkCredentials},
		StringData: map[string]string{"admin": restAdmin, "secretKey": secretKey},
	}
	Expect(k8s.Create(context.Background(), secret)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
	ref := func(key string) corev1.SecretKeySelector {
		return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret.Name}, Key: key}
	}
	rs := &v1alpha1.OfficialAccountResync{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: eventNamespace},
		Spec: v1alpha1.OfficialAccountResyncSpec{SDKAppID: fmt.Sprint(restApp), Endpoint: endpoint,
			AdminIdentifierSecretRef: ref("admin"), SecretKeySecretRef: ref("secretKey"), OfficialAccounts: accounts},
	}
	Expect(k8s.Create(context.Background(), rs)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), rs) })
	return rs
}

// resyncCondition waits until the resync's condition has the status, and returns the resync.
func resyncCondition(rs *v1alpha1.OfficialAccountResync, kind string, status metav1.ConditionStatus) *v1alpha1.OfficialAccountResync {
	GinkgoHelper()
	got := &v1alpha1.OfficialAccountResync{}
	Eventually(func() metav1.ConditionStatus {
		Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(rs), got)).To(Succeed())
		if c := meta.FindStatusCondition(got.Status.Conditions, kind); c != nil && c.ObservedGeneration == got.Generation {
			return c.Status
		}
		return ""
	}, 30*time.Second).Should(Equal(status))
	return got
}

// snapshotsOf are the account's Snapshot events, by snapshot id.
func snapshotsOf(account string) map[string][]v1alpha1.OfficialAccountSubscription {
	GinkgoHelper()
	out := map[string][]v1alpha1.OfficialAccountSubscription{}
	for _, s := range subscriptionsOf(account) {
		if s.Spec.Action == v1alpha1.ActionSnapshot {
			out[s.Spec.Snapshot.ID] = append(out[s.Spec.Snapshot.ID], s)
		}
	}
	return out
}

var _ = Describe("An OfficialAccountResync", func() {
	It("lists 1,050 subscribers across 6 pages and stores them as one snapshot of 3 parts, delivered to the sinks", func() {
		fake, endpoint := tencentREST()
		account, receiver := accountWithReceiver()
		newSink("snapshots", account, receiver)
		fake.SetSubscribers(account, members("m", 1050))
		rs := resyncCondition(newResync("paging", endpoint, restKey, account), v1alpha1.ConditionReady, metav1.ConditionTrue)

		Expect(rs.Status.Accounts).To(HaveLen(1))
		Expect(rs.Status.Accounts[0].Subscribers).To(BeEquivalentTo(1050))
		Expect(rs.Status.Accounts[0].Calls).To(BeEquivalentTo(2*6), "two passes, one call per page of 200")
		Expect(rs.Status.Accounts[0].State).To(Equal(v1alpha1.AccountResynced))
		Expect(rs.Status.ResyncedAccounts).To(BeEquivalentTo(1))
		// The default interval, from the listing's end; T is 5 s before its start.
		Expect(rs.Status.NextResyncTime.Sub(rs.Status.LastResyncTime.Time)).To(
			SatisfyAll(BeNumerically(">=", 6*time.Hour+4*time.Second), BeNumerically("<", 6*time.Hour+time.Minute)))
		snapshots := snapshotsOf(account)
		Expect(snapshots).To(HaveLen(1))
		parts := snapshots[rs.Status.Accounts[0].Snapshot]
		Expect(parts).To(HaveLen(3))
		var listed []string
		for _, p := range parts {
			Expect(p.Spec.Snapshot.Parts).To(BeEquivalentTo(3))
			Expect(p.Spec.Snapshot.Subscribers).To(BeEquivalentTo(1050))
			listed = append(listed, p.Spec.Subscribers...)
		}
		slices.Sort(listed)
		Expect(slices.Compact(listed)).To(HaveLen(1050))

		Eventually(func() []string {
			var types []string
			for _, r := range receiver.Requests() {
				types = append(types, r.Header.Get("ce-type"))
			}
			return types
		}, 30*time.Second).Should(HaveExactElements(
			"dev.chat-operators.officialaccount.snapshot", "dev.chat-operators.officialaccount.snapshot", "dev.chat-operators.officialaccount.snapshot"))
	})

	It("retries Tencent's frequency and internal errors with backoff", func() {
		fake, endpoint := tencentREST()
		account := uniqueAccount()
		fake.SetSubscribers(account, members("m", 250))
		fake.FailNext(60018, 60007, 10004)
		rs := resyncCondition(newResync("backoff", endpoint, restKey, account), v1alpha1.ConditionReady, metav1.ConditionTrue)
		Expect(rs.Status.Accounts[0].Subscribers).To(BeEquivalentTo(250))
		Expect(rs.Status.Accounts[0].Calls).To(BeEquivalentTo(2*2+3), "two passes of two pages, and three refused calls")
	})

	It("stalls with Tencent's error when the secret key is wrong, and stores nothing", func() {
		fake, endpoint := tencentREST()
		account := uniqueAccount()
		rs := resyncCondition(newResync("wrong-key", endpoint, "not-the-key", account, account+"-2"), v1alpha1.ConditionStalled, metav1.ConditionTrue)
		Expect(fake.CallsFor(account)).To(Equal(1), "a refused key is not retried")
		Expect(fake.CallsFor(account+"-2")).To(Equal(0), "the second account is not tried with a key Tencent refused")
		Expect(rs.Status.Accounts).To(HaveLen(2), "the account not tried keeps its entry")
		stalled := meta.FindStatusCondition(rs.Status.Conditions, v1alpha1.ConditionStalled)
		Expect(stalled.Reason).To(Equal(v1alpha1.ReasonTencentRefused))
		Expect(stalled.Message).To(ContainSubstring("70009"))
		Expect(stalled.Message).NotTo(ContainSubstring("not-the-key"))
		Expect(meta.IsStatusConditionFalse(rs.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		Expect(snapshotsOf(account)).To(BeEmpty())
	})

	It("reports an account that does not exist on the account, without stalling", func() {
		_, endpoint := tencentREST()
		rs := resyncCondition(newResync("gone", endpoint, restKey, uniqueAccount()), v1alpha1.ConditionReady, metav1.ConditionFalse)
		Expect(rs.Status.Accounts[0].LastError).To(ContainSubstring("130004"))
		Expect(meta.IsStatusConditionTrue(rs.Status.Conditions, v1alpha1.ConditionStalled)).To(BeFalse())
	})

	It("resyncs again on the annotation; a resync that finds no change stores only its own snapshot", func() {
		fake, endpoint := tencentREST()
		account := uniqueAccount()
		fake.SetSubscribers(account, members("m", 600))
		rs := resyncCondition(newResync("again", endpoint, restKey, account), v1alpha1.ConditionReady, metav1.ConditionTrue)
		first := rs.Status.Accounts[0]
		Expect(first.Changed).To(BeFalse())

		patch := client.MergeFrom(rs.DeepCopy())
		rs.Annotations = map[string]string{v1alpha1.AnnotationResyncNow: "1"}
		Expect(k8s.Patch(context.Background(), rs, patch)).To(Succeed())
		Eventually(func() string {
			Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(rs), rs)).To(Succeed())
			return rs.Status.LastHandledResync
		}, 30*time.Second).Should(Equal("1"))
		second := rs.Status.Accounts[0]
		Expect(second.Snapshot).NotTo(Equal(first.Snapshot))
		Expect(second.Changed).To(BeFalse(), "the same subscribers")
		snapshots := snapshotsOf(account)
		Expect(snapshots).To(HaveLen(2))
		Expect(snapshots[second.Snapshot]).To(HaveLen(2), "600 subscribers are 2 parts, and nothing else was stored")

		fake.Unsubscribe(account, "m-0007")
		patch = client.MergeFrom(rs.DeepCopy())
		rs.Annotations[v1alpha1.AnnotationResyncNow] = "2"
		Expect(k8s.Patch(context.Background(), rs, patch)).To(Succeed())
		Eventually(func() bool {
			Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(rs), rs)).To(Succeed())
			return rs.Status.LastHandledResync == "2" && rs.Status.Accounts[0].Changed
		}, 30*time.Second).Should(BeTrue(), "a member who left changes the listing")
	})
})
