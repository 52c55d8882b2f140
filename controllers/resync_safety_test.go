package controllers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/fakerest"
	"github.com/chat-operators/officialaccount-operator/resync"
)

// resyncOf makes a resync of the accounts against the suite's stand-in; mutate changes
// it before it is created.
func resyncOf(name string, accounts []string, mutate func(*v1alpha1.OfficialAccountResync)) *v1alpha1.OfficialAccountResync {
	GinkgoHelper()
	rs := newResyncSpec(name, restEndpoint, accounts)
	if mutate != nil {
		mutate(rs)
	}
	Expect(k8s.Create(context.Background(), rs)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), rs) })
	return rs
}

func newResyncSpec(name, endpoint string, accounts []string) *v1alpha1.OfficialAccountResync {
	ref := func(key string) corev1.SecretKeySelector {
		return corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name + "-tencent"}, Key: key}
	}
	return &v1alpha1.OfficialAccountResync{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: eventNamespace},
		Spec: v1alpha1.OfficialAccountResyncSpec{SDKAppID: fmt.Sprint(restApp), Endpoint: endpoint,
			AdminIdentifierSecretRef: ref("admin"), SecretKeySecretRef: ref("secretKey"), OfficialAccounts: accounts},
	}
}

// resyncSecret creates the credentials Secret of resync name.
func resyncSecret(name, secretKey string, labelled bool) *corev1.Secret {
	GinkgoHelper()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-tencent", Namespace: eventNamespace},
		StringData: map[string]string{"admin": restAdmin, "secretKey": secretKey},
	}
	if labelled {
		secret.Labels = sinkCredentials
	}
	Expect(k8s.Create(context.Background(), secret)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
	return secret
}

func getResync(rs *v1alpha1.OfficialAccountResync) *v1alpha1.OfficialAccountResync {
	GinkgoHelper()
	got := &v1alpha1.OfficialAccountResync{}
	Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(rs), got)).To(Succeed())
	return got
}

func readyReason(rs *v1alpha1.OfficialAccountResync) string {
	if c := meta.FindStatusCondition(rs.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.ObservedGeneration == rs.Generation {
		return c.Reason
	}
	return ""
}

// eventsAbout are the Events recorded about an object.
func eventsAbout(obj client.Object) []eventsv1.Event {
	GinkgoHelper()
	var list eventsv1.EventList
	Expect(k8s.List(context.Background(), &list, client.InNamespace(obj.GetNamespace()))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == obj.GetName() && e.Regarding.Kind == "OfficialAccountResync" {
			out = append(out, e)
		}
	}
	return out
}

// metricValue is the in-process value of a counter or gauge with these labels, 0 if absent.
func metricValue(name string, labels map[string]string) float64 {
	GinkgoHelper()
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func later(x, y time.Time) time.Time {
	if x.After(y) {
		return x
	}
	return y
}

func earlier(x, y time.Time) time.Time {
	if x.Before(y) {
		return x
	}
	return y
}

// hasSeries tells whether a metric has a series with these labels.
func hasSeries(name string, labels map[string]string) bool {
	GinkgoHelper()
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() == name && slices.ContainsFunc(f.GetMetric(), func(m *dto.Metric) bool { return hasLabels(m, labels) }) {
			return true
		}
	}
	return false
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			found++
		}
	}
	return found == len(want)
}

// refuseSnapshotPart2 has the API server refuse part 2 of the account's snapshots, as a
// crash after part 1 would stop it, until the binding it returns is deleted.
func refuseSnapshotPart2(account string) *admissionv1.ValidatingAdmissionPolicyBinding {
	GinkgoHelper()
	// The API server refuses part 2 of this account's snapshots, as a crash after part 1 would stop it.
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "refuse-part-2"},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule: admissionv1.Rule{APIGroups: []string{v1alpha1.GroupVersion.Group}, APIVersions: []string{"*"},
						Resources: []string{"officialaccountsubscriptions"}}},
			}}},
			Validations: []admissionv1.Validation{{Expression: fmt.Sprintf(
				"!has(object.spec.snapshot) || object.metadata.labels['%s'] != '%s' || object.spec.snapshot.part != 2",
				v1alpha1.LabelOfficialAccountHash, v1alpha1.OfficialAccountHash(account))}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "refuse-part-2"},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
	}
	for _, obj := range []client.Object{policy, binding} {
		Expect(k8s.Create(context.Background(), obj)).To(Succeed())
		DeferCleanup(func() { _ = k8s.Delete(context.Background(), obj) })
	}
	// The API server takes the policy up in its own time: wait until it refuses a probe.
	probe := &v1alpha1.OfficialAccountSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: "probe-part-2", Namespace: eventNamespace,
			Labels: map[string]string{v1alpha1.LabelOfficialAccountHash: v1alpha1.OfficialAccountHash(account)}},
		Spec: v1alpha1.OfficialAccountSubscriptionSpec{SDKAppID: fmt.Sprint(restApp), CallbackCommand: v1alpha1.CommandSnapshot,
			Action: v1alpha1.ActionSnapshot, OfficialAccount: account, Subscribers: []string{}, ReceivedTime: metav1.Now(),
			Snapshot: &v1alpha1.SnapshotPart{ID: "probe", Part: 2, Parts: 3}},
	}
	Eventually(func() error { return k8s.Create(context.Background(), probe.DeepCopy(), client.DryRunAll) }).
		Should(MatchError(ContainSubstring("refuse-part-2")))
	return binding
}

// directNamespace holds resyncs that the suite's operator does not watch (it watches the
// event namespace only): a spec reconciles them itself, with a Reconciler of its own, to
// end a run where it chooses.
const directNamespace = "resync-direct"

// directResync creates, in directNamespace, the credentials Secret and a resync of the
// accounts against the suite's stand-in, and returns the request that reconciles it.
func directResync(name string, accounts ...string) reconcile.Request {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: directNamespace}}
	if err := k8s.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-tencent", Namespace: directNamespace, Labels: sinkCredentials},
		StringData: map[string]string{"admin": restAdmin, "secretKey": restKey},
	}
	Expect(k8s.Create(context.Background(), secret)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), secret) })
	rs := newResyncSpec(name, restEndpoint, accounts)
	rs.Namespace = directNamespace
	Expect(k8s.Create(context.Background(), rs)).To(Succeed())
	DeferCleanup(func() { _ = k8s.Delete(context.Background(), rs) })
	return reconcile.Request{NamespacedName: client.ObjectKeyFromObject(rs)}
}

// directReconciler reconciles resyncs with the spec's client and REST transport.
func directReconciler(c client.Client, transport http.RoundTripper) *resync.Reconciler {
	return &resync.Reconciler{Client: c, APIReader: k8s, HTTP: &http.Client{Transport: transport, Timeout: 10 * time.Second},
		AllowedEndpoints: []string{restEndpoint}, FailureBackoff: resyncFailureBackoff,
		PageBackoff: func(int) time.Duration { return 50 * time.Millisecond }}
}

// cancelOnAccount cancels the run, as a lost lease or a shutdown does, when it first
// calls Tencent for the account; that call then fails as the run's context ends.
type cancelOnAccount struct {
	account string
	cancel  context.CancelFunc
}

func (c *cancelOnAccount) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	if bytes.Contains(body, []byte(`"`+c.account+`"`)) {
		c.cancel()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// secretsUnavailable is the API server failing, for a while, to answer for Secrets.
type secretsUnavailable struct{ client.Client }

func (c secretsUnavailable) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		return apierrors.NewServiceUnavailable("etcd is electing a leader")
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// resyncsAsFirstRead is a cache that has not caught up: it answers every Get of a resync
// with the object as it first read it, before the run's status writes.
type resyncsAsFirstRead struct {
	client.Client
	first map[client.ObjectKey]*v1alpha1.OfficialAccountResync
}

func (c *resyncsAsFirstRead) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	rs, ok := obj.(*v1alpha1.OfficialAccountResync)
	if !ok {
		return c.Client.Get(ctx, key, obj, opts...)
	}
	if c.first[key] == nil {
		if err := c.Client.Get(ctx, key, rs, opts...); err != nil {
			return err
		}
		c.first[key] = rs.DeepCopy()
	}
	c.first[key].DeepCopyInto(rs)
	return nil
}

// snapshotLeftAtPart2 waits until the resync's one account failed at part 2 of 3 and
// returns the snapshot it left in part.
func snapshotLeftAtPart2(rs *v1alpha1.OfficialAccountResync) *v1alpha1.SnapshotInProgress {
	GinkgoHelper()
	var left *v1alpha1.SnapshotInProgress
	Eventually(func() string {
		a := getResync(rs).Status.Accounts
		if len(a) == 1 && a[0].InProgress != nil && a[0].State == v1alpha1.AccountFailed {
			left = a[0].InProgress
			return a[0].LastError
		}
		return ""
	}, 30*time.Second).Should(ContainSubstring("part 2/3"))
	return left
}

var _ = Describe("A resync, made safe", func() {
	It("follows a run longer than its own schedule with the next one", func() {
		account := uniqueAccount()
		restStandIn.SetSubscribers(account, members("m", 3))
		restStandIn.Delay(account, 1500*time.Millisecond) // two passes: 3 s, longer than the interval
		resyncSecret("long-run", restKey, true)
		rs := resyncOf("long-run", []string{account}, func(rs *v1alpha1.OfficialAccountResync) {
			rs.Spec.Interval = &metav1.Duration{Duration: time.Second}
		})
		seen := map[string]bool{}
		Eventually(func() int {
			if s := getResync(rs).Status.Accounts; len(s) == 1 && s[0].Snapshot != "" {
				seen[s[0].Snapshot] = true
			}
			return len(seen)
		}, 30*time.Second, 200*time.Millisecond).Should(BeNumerically(">=", 3), "a resync after each run, though each outlasts its interval")
	})

	It("refuses an endpoint outside Tencent's domains without a call, and never shows the signed URL", func() {
		account := uniqueAccount()
		other := fakerest.New(restApp, restAdmin, restKey) // a host the operator does not allow
		other.SetSubscribers(account, members("m", 3))
		srv := httptest.NewServer(other)
		DeferCleanup(srv.Close)
		resyncSecret("elsewhere", restKey, true)
		rs := resyncOf("elsewhere", []string{account}, func(rs *v1alpha1.OfficialAccountResync) { rs.Spec.Endpoint = srv.URL })
		got := resyncCondition(rs, v1alpha1.ConditionStalled, metav1.ConditionTrue)
		stalled := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionStalled)
		Expect(stalled.Reason).To(Equal(v1alpha1.ReasonEndpointNotAllowed))
		Expect(stalled.Message).To(ContainSubstring("--tencent-rest-endpoints"))
		Expect(other.Calls()).To(BeZero(), "the admin UserSig never went there")

		// The API server refuses plain http beyond the loopback address, and a URL with a user.
		for _, endpoint := range []string{"http://adminapisgp.im.qcloud.com", "https://user@console.tim.qq.com"} {
			bad := newResyncSpec("bad-endpoint", endpoint, []string{account})
			Expect(k8s.Create(context.Background(), bad)).NotTo(Succeed(), endpoint)
		}

		// Nothing it wrote carries the signed URL's parameters.
		resyncSecret("signed-url", "not-the-key", true)
		good := resyncOf("signed-url", []string{account}, nil)
		refused := resyncCondition(good, v1alpha1.ConditionStalled, metav1.ConditionTrue)
		written, err := json.Marshal(refused.Status)
		Expect(err).NotTo(HaveOccurred())
		for _, e := range eventsAbout(good) {
			written = append(written, e.Note...)
		}
		for _, secret := range []string{"usersig=", "identifier=", "sdkappid=", "not-the-key"} {
			Expect(strings.ToLower(string(written))).NotTo(ContainSubstring(secret))
		}
	})

	It("completes a snapshot it left in part with the same time and id", func() {
		account := uniqueAccount()
		restStandIn.SetSubscribers(account, members("m", 1200)) // 3 parts
		binding := refuseSnapshotPart2(account)
		resyncSecret("in-part", restKey, true)
		rs := resyncOf("in-part", []string{account}, nil)
		left := snapshotLeftAtPart2(rs)
		Expect(snapshotsOf(account)[left.Snapshot]).To(HaveLen(1), "part 1 was stored before the refusal")

		restStandIn.Unsubscribe(account, "m-0003") // the retry lists anew: one member fewer
		Expect(k8s.Delete(context.Background(), binding)).To(Succeed())
		done := resyncCondition(rs, v1alpha1.ConditionReady, metav1.ConditionTrue)
		Expect(done.Status.Accounts[0].Snapshot).To(Equal(left.Snapshot), "the retry completed the same snapshot")
		Expect(done.Status.Accounts[0].LastResyncTime.Time.Equal(time.UnixMilli(left.EventTime).Truncate(time.Second))).To(BeTrue())
		Expect(done.Status.Accounts[0].InProgress).To(BeNil())
		parts := snapshotsOf(account)
		Expect(parts).To(HaveLen(1), "no second snapshot was started")
		var listed []string
		for _, p := range parts[left.Snapshot] {
			Expect(p.Spec.EventTime).To(Equal(left.EventTime))
			Expect(p.Spec.Snapshot.Parts).To(BeEquivalentTo(3))
			listed = append(listed, p.Spec.Subscribers...)
		}
		Expect(parts[left.Snapshot]).To(HaveLen(3))
		Expect(listed).To(HaveLen(1200), "part 1 as first stored, the rest from the new listing")
	})

	It("stores a part again under a name of its own once the first was delivered and deleted", func() {
		account, receiver := accountWithReceiver()
		newSink("part-again", account, receiver)
		restStandIn.SetSubscribers(account, members("m", 1200)) // 3 parts
		binding := refuseSnapshotPart2(account)
		resyncSecret("part-again", restKey, true)
		rs := resyncOf("part-again", []string{account}, nil)
		left := snapshotLeftAtPart2(rs)
		// Part 1 is delivered, and deleted after its retention, before the retry.
		Eventually(func() int { return len(receiver.Requests()) }, 30*time.Second).Should(Equal(1))
		Eventually(func() int { return len(snapshotsOf(account)[left.Snapshot]) }, 3*retention+30*time.Second, 200*time.Millisecond).
			Should(BeZero())

		restStandIn.Unsubscribe(account, "m-0003") // the retry lists anew: part 1 now holds other members
		Expect(k8s.Delete(context.Background(), binding)).To(Succeed())
		done := resyncCondition(rs, v1alpha1.ConditionReady, metav1.ConditionTrue)
		Expect(done.Status.Accounts[0].Snapshot).To(Equal(left.Snapshot), "the retry completed the same snapshot")
		Eventually(func() int { return len(receiver.Requests()) }, 30*time.Second).Should(Equal(4), "part 1 twice, parts 2 and 3")

		ids := map[string]bool{}
		parts := map[int32]int{}
		delivered := map[string]bool{}
		for _, r := range receiver.Requests() {
			id := r.Header.Get("ce-id")
			Expect(r.Header.Get("Idempotency-Key")).To(Equal(id))
			Expect(ids).NotTo(HaveKey(id), "a part stored again reused a delivered part's id: a deduplicating receiver drops it")
			ids[id] = true
			var spec v1alpha1.OfficialAccountSubscriptionSpec
			Expect(json.Unmarshal(r.Body, &spec)).To(Succeed())
			Expect(spec.Snapshot.ID).To(Equal(left.Snapshot))
			Expect(spec.Snapshot.Parts).To(BeEquivalentTo(3))
			Expect(spec.EventTime).To(Equal(left.EventTime))
			parts[spec.Snapshot.Part]++
			for _, m := range spec.Subscribers {
				delivered[m] = true
			}
		}
		Expect(parts).To(Equal(map[int32]int{1: 2, 2: 1, 3: 1}))
		for _, m := range members("m", 1200) {
			if m.Account != "m-0003" {
				Expect(delivered).To(HaveKey(m.Account))
			}
		}
	})

	It("resyncs as soon as its Secret gets the label, and again when the key is corrected", func() {
		account := uniqueAccount()
		restStandIn.SetSubscribers(account, members("m", 3))
		secret := resyncSecret("relabelled", "not-the-key", false)
		rs := resyncOf("relabelled", []string{account}, nil)
		// Wait until the backoff has grown well past how long the fix may take to act.
		var due time.Time
		Eventually(func() int32 {
			got := getResync(rs)
			if len(got.Status.Accounts) == 1 && got.Status.Accounts[0].NextResyncTime != nil {
				due = got.Status.Accounts[0].NextResyncTime.Time
				Expect(readyReason(got)).To(Equal(v1alpha1.ReasonSecretNotAllowed))
				return got.Status.Accounts[0].Failures
			}
			return 0
		}, 30*time.Second, 100*time.Millisecond).Should(BeNumerically(">=", 5))
		Expect(restStandIn.CallsFor(account)).To(BeZero())

		patch := client.MergeFrom(secret.DeepCopy())
		secret.Labels = sinkCredentials
		Expect(k8s.Patch(context.Background(), secret, patch)).To(Succeed())
		Eventually(func() string { return readyReason(getResync(rs)) }, 5*time.Second, 50*time.Millisecond).Should(Equal(v1alpha1.ReasonTencentRefused))
		Expect(time.Now()).To(BeTemporally("<", due), "the label acted at once, not at the backoff")
		Expect(restStandIn.CallsFor(account)).To(Equal(1))

		// Tencent refused the key: its backoff is longer still. Then the corrected key.
		due = getResync(rs).Status.Accounts[0].NextResyncTime.Time
		patch = client.MergeFrom(secret.DeepCopy())
		secret.Data = map[string][]byte{"admin": []byte(restAdmin), "secretKey": []byte(restKey)}
		Expect(k8s.Patch(context.Background(), secret, patch)).To(Succeed())
		Eventually(func() string { return readyReason(getResync(rs)) }, 5*time.Second, 50*time.Millisecond).Should(Equal(v1alpha1.ReasonResynced))
		Expect(time.Now()).To(BeTemporally("<", due), "the corrected key acted at once")
	})

	It("retries a failing account on its own backoff and leaves the others on their interval", func() {
		good1, good2, gone := uniqueAccount(), uniqueAccount(), uniqueAccount()
		restStandIn.SetSubscribers(good1, members("m", 3))
		restStandIn.SetSubscribers(good2, members("m", 3))
		const every = 5 * time.Second
		resyncSecret("one-gone", restKey, true)
		created := time.Now()
		rs := resyncOf("one-gone", []string{good1, gone, good2}, func(rs *v1alpha1.OfficialAccountResync) {
			rs.Spec.Interval = &metav1.Duration{Duration: every}
		})
		Eventually(func() int { return restStandIn.CallsFor(gone) }, 30*time.Second, 100*time.Millisecond).Should(BeNumerically(">=", 4))
		// Each listing of a good account is two calls, and it is listed at most once an interval.
		listings := math.Floor(time.Since(created).Seconds()/every.Seconds()) + 1
		for _, good := range []string{good1, good2} {
			Expect(restStandIn.CallsFor(good)).To(BeNumerically("<=", 2*listings), "re-listed with the failing account's retries")
		}
		got := getResync(rs)
		Expect(got.Status.ResyncedAccounts).To(BeEquivalentTo(2))
		Expect(got.Status.FailingAccounts).To(BeEquivalentTo(1))
		Expect(readyReason(got)).To(Equal(v1alpha1.ReasonResyncFailed))
		ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
		Expect(ready.Message).To(ContainSubstring(gone + ": Tencent REST API error 130004"))
	})

	It("shares one pace between the resyncs of one app", func() {
		a, b := uniqueAccount(), uniqueAccount()
		restStandIn.SetSubscribers(a, members("m", 1050)) // 6 pages, two passes
		restStandIn.SetSubscribers(b, members("m", 1050))
		for _, name := range []string{"paced-a", "paced-b"} {
			resyncSecret(name, restKey, true)
		}
		resyncOf("paced-a", []string{a}, nil)
		resyncOf("paced-b", []string{b}, nil)
		Eventually(func() int { return restStandIn.CallsFor(a) + restStandIn.CallsFor(b) }, 30*time.Second).Should(Equal(24))
		byTime := func(x, y time.Time) int { return x.Compare(y) }
		callsA, callsB := restStandIn.CallTimesFor(a), restStandIn.CallTimesFor(b)
		slices.SortFunc(callsA, byTime)
		slices.SortFunc(callsB, byTime)
		calls := slices.SortedFunc(slices.Values(append(slices.Clone(callsA), callsB...)), byTime)
		// 20 calls a second for the app, not for each resync: a least duration, which no
		// slow machine can undercut, but for one pace: the first call may reach the stand-in
		// late after its turn (seen: 1.14985 s for 23 paces), the last one on time.
		const pace = 50 * time.Millisecond
		Expect(calls[len(calls)-1].Sub(calls[0])).To(BeNumerically(">=", 22*pace))
		// That alone holds for two resyncs that do not overlap, each at its own pace. So:
		// they did overlap (both called Tencent in the same stretch of time), and within
		// that stretch their calls together kept the app's pace. Each call's time is when
		// the stand-in got it, at least a pace after the previous call's turn; one pace is
		// left to how late the first of them arrived. Two paces of their own would fit
		// about twice as many calls in the stretch.
		from, to := later(callsA[0], callsB[0]), earlier(callsA[len(callsA)-1], callsB[len(callsB)-1])
		within := 0
		for _, c := range calls {
			if !c.Before(from) && !c.After(to) {
				within++
			}
		}
		Expect(within).To(BeNumerically(">=", 8), "the two resyncs called Tencent at the same time (a: %v to %v, b: %v to %v)",
			callsA[0], callsA[len(callsA)-1], callsB[0], callsB[len(callsB)-1])
		Expect(to.Sub(from)).To(BeNumerically(">=", time.Duration(within-2)*pace),
			"%d calls of the app within %v: more than one pace allows", within, to.Sub(from))
	})

	It("records an Event, a log line and metrics for each account's resync", func() {
		good, gone := uniqueAccount(), uniqueAccount()
		restStandIn.SetSubscribers(good, members("m", 7))
		resyncSecret("observed", restKey, true)
		resyncsBefore := metricValue("officialaccount_resyncs_total", map[string]string{"result": "resynced"})
		notFoundBefore := metricValue("officialaccount_tencent_rest_calls_total", map[string]string{"code": "130004"})
		rs := resyncOf("observed", []string{good, gone}, nil)
		Eventually(func() int32 { return getResync(rs).Status.ResyncedAccounts }, 30*time.Second).Should(BeEquivalentTo(1))

		Eventually(func() []string {
			var notes []string
			for _, e := range eventsAbout(rs) {
				notes = append(notes, e.Type+" "+e.Reason+" "+e.Note)
			}
			return notes
		}, 10*time.Second).Should(ContainElements(
			ContainSubstring("Normal Resynced "+good+": 7 subscriber(s) listed in 2 call(s), unchanged"),
			SatisfyAll(HavePrefix("Warning ResyncFailed "+gone), ContainSubstring("130004")),
		))
		key := eventNamespace + "/observed"
		Expect(metricValue("officialaccount_resyncs_total", map[string]string{"result": "resynced"})).To(BeNumerically(">", resyncsBefore))
		Expect(metricValue("officialaccount_tencent_rest_calls_total", map[string]string{"code": "130004"})).To(BeNumerically(">", notFoundBefore))
		Expect(metricValue("officialaccount_resync_subscribers", map[string]string{"resync": key, "official_account": good})).To(BeEquivalentTo(7))
		Expect(metricValue("officialaccount_resync_interval_seconds", map[string]string{"resync": key})).To(BeEquivalentTo(6 * 3600))
		Expect(metricValue("officialaccount_resync_last_success_timestamp_seconds",
			map[string]string{"resync": key, "official_account": gone})).To(BeNumerically(">", 0), "an account never resynced counts from the resync's creation")
	})

	It("exports its series when nothing is due, and forgets them while suspended", func() {
		account := uniqueAccount()
		restStandIn.SetSubscribers(account, members("m", 7))
		secret := resyncSecret("exported", restKey, true)
		rs := resyncOf("exported", []string{account}, nil)
		resyncCondition(rs, v1alpha1.ConditionReady, metav1.ConditionTrue)
		key := eventNamespace + "/exported"
		subscribers := map[string]string{"resync": key, "official_account": account}
		Expect(metricValue("officialaccount_resync_subscribers", subscribers)).To(BeEquivalentTo(7))

		// A reconcile with nothing due (a Secret changed) exports the status as it is, as a
		// new leader's first one does: here a status this test changed behind the resync.
		got := getResync(rs)
		patch := client.MergeFrom(got.DeepCopy())
		got.Status.Accounts[0].Subscribers = 99
		Expect(k8s.Status().Patch(context.Background(), got, patch)).To(Succeed())
		calls := restStandIn.CallsFor(account)
		secretPatch := client.MergeFrom(secret.DeepCopy())
		secret.Annotations = map[string]string{"touched": "1"}
		Expect(k8s.Patch(context.Background(), secret, secretPatch)).To(Succeed())
		Eventually(func() float64 { return metricValue("officialaccount_resync_subscribers", subscribers) }, 10*time.Second).
			Should(BeEquivalentTo(99))
		Expect(restStandIn.CallsFor(account)).To(Equal(calls), "nothing was due")

		// Suspended, it is not overdue: its series are gone.
		patch = client.MergeFrom(rs.DeepCopy())
		rs.Spec.Suspend = true
		Expect(k8s.Patch(context.Background(), rs, patch)).To(Succeed())
		Eventually(func() bool {
			return hasSeries("officialaccount_resync_last_success_timestamp_seconds", map[string]string{"resync": key}) ||
				hasSeries("officialaccount_resync_interval_seconds", map[string]string{"resync": key})
		}, 10*time.Second).Should(BeFalse())
	})

	It("leaves the accounts it did not try untouched when its run is cancelled", func() {
		first, second, third := uniqueAccount(), uniqueAccount(), uniqueAccount()
		for _, a := range []string{first, second, third} {
			restStandIn.SetSubscribers(a, members("m", 3))
		}
		req := directResync("cancelled", first, second, third)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, err := directReconciler(k8s, &cancelOnAccount{account: second, cancel: cancel}).Reconcile(ctx, req)
		Expect(err).NotTo(HaveOccurred())
		Expect(ctx.Err()).To(HaveOccurred(), "the run was cancelled at the second account")

		got := &v1alpha1.OfficialAccountResync{}
		Expect(k8s.Get(context.Background(), req.NamespacedName, got)).To(Succeed())
		Expect(got.Status.Accounts).To(HaveLen(3))
		Expect(got.Status.Accounts[0].State).To(Equal(v1alpha1.AccountResynced))
		for _, a := range got.Status.Accounts[1:] {
			Expect(a.State).To(BeEmpty(), "%s: %s", a.OfficialAccount, a.LastError)
			Expect(a.Failures).To(BeZero(), a.OfficialAccount)
			Expect(a.NextResyncTime).To(BeNil(), "%s is due at once for whoever leads next", a.OfficialAccount)
		}
		Expect(got.Status.FailingAccounts).To(BeZero())
		Expect(restStandIn.CallsFor(third)).To(BeZero())
		ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
		Expect(ready).NotTo(BeNil())
		Expect(ready.Status).To(Equal(metav1.ConditionFalse), "two accounts are not resynced yet")
		Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.ConditionStalled)).To(BeFalse())
	})

	It("does not list its accounts again when the cache has not yet seen its last run", func() {
		account := uniqueAccount()
		restStandIn.SetSubscribers(account, members("m", 3))
		req := directResync("lagging-cache", account)
		reconciler := directReconciler(&resyncsAsFirstRead{Client: k8s, first: map[client.ObjectKey]*v1alpha1.OfficialAccountResync{}},
			http.DefaultTransport)
		_, err := reconciler.Reconcile(context.Background(), req)
		Expect(err).NotTo(HaveOccurred())
		listing := restStandIn.CallsFor(account)
		Expect(listing).To(BeNumerically(">", 0))

		// A Secret's event, say, brings the resync back before the cache has its status.
		_, err = reconciler.Reconcile(context.Background(), req)
		Expect(err).NotTo(HaveOccurred())
		Expect(restStandIn.CallsFor(account)).To(Equal(listing), "listed again, from a status the run had replaced")
	})

	It("fails, without stalling, when its Secret cannot be read for a while", func() {
		account := uniqueAccount()
		restStandIn.SetSubscribers(account, members("m", 3))
		req := directResync("secret-unavailable", account)
		_, err := directReconciler(secretsUnavailable{k8s}, http.DefaultTransport).Reconcile(context.Background(), req)
		Expect(err).NotTo(HaveOccurred())
		got := &v1alpha1.OfficialAccountResync{}
		Expect(k8s.Get(context.Background(), req.NamespacedName, got)).To(Succeed())
		ready := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
		Expect(ready).NotTo(BeNil())
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Reason).To(Equal(v1alpha1.ReasonResyncFailed))
		Expect(ready.Message).To(ContainSubstring("etcd is electing a leader"))
		Expect(meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionStalled)).To(BeNil(),
			"Stalled is for what needs a human; this is retried on the backoff")
		Expect(got.Status.Accounts[0].NextResyncTime).NotTo(BeNil(), "retried on the account's backoff")

		// Once the Secret answers, the next run after the backoff resyncs.
		healthy := directReconciler(k8s, http.DefaultTransport)
		Eventually(func() string {
			_, err := healthy.Reconcile(context.Background(), req)
			Expect(err).NotTo(HaveOccurred())
			Expect(k8s.Get(context.Background(), req.NamespacedName, got)).To(Succeed())
			return readyReason(got)
		}, 10*time.Second, 100*time.Millisecond).Should(Equal(v1alpha1.ReasonResynced))
	})
})
