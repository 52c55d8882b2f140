package controllers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/operator"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// The suite runs the whole operator, as the binary wires it, against a real kube-apiserver.
const (
	eventNamespace = "events"
	plainApp       = "1400000000" // no webhook authentication
	signedApp      = "1400000001" // authentication on
	signedAppToken = "test-token-of-1400000001"
	maxBodyBytes   = 64 << 10
	// maxResourcesPerCallback: 1,500 subscribers, fewer than maxBodyBytes holds.
	maxResourcesPerCallback = 3
	retention               = 10 * time.Second
	// sinkNotFoundGrace: long enough to re-create a sink, short enough to watch one expire.
	sinkNotFoundGrace = 5 * time.Second
)

var (
	env        *envtest.Environment
	k8s        client.Client
	webhookURL string
	stopMgr    context.CancelFunc
	// operatorDone receives what operator.Run returned.
	operatorDone chan error
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Operator suite (envtest)")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	env = testenv.NewEnvironment()
	cfg, err := testenv.Start(env)
	Expect(err).NotTo(HaveOccurred())

	scheme := operator.NewScheme()
	testClientCfg := rest.CopyConfig(cfg)
	testClientCfg.QPS = -1 // the tests poll; a client-side limit would only slow them
	k8s, err = client.New(testClientCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: eventNamespace}})).To(Succeed())

	opCfg := operator.DefaultConfig()
	opCfg.Webhook.BindAddress = "127.0.0.1:0"
	opCfg.Webhook.SDKAppIDs = []string{plainApp, signedApp}
	opCfg.Webhook.Tokens = webhookserver.Tokens{signedApp: {signedAppToken}}
	opCfg.Webhook.AllowUnsigned = true // plainApp
	opCfg.Webhook.Namespace = eventNamespace
	opCfg.Webhook.MaxBodyBytes = maxBodyBytes
	opCfg.Webhook.MaxResourcesPerCallback = maxResourcesPerCallback
	opCfg.Webhook.DrainPeriod = 0
	opCfg.DeliveredRetention = retention
	opCfg.DeliveredEvents = true // off by default; the delivery spec checks the opt-in Event
	opCfg.SinkNotFoundGrace = sinkNotFoundGrace
	// One stand-in of Tencent's REST API for the suite, the only endpoint besides
	// Tencent's own that resyncs may call; failures retried within a second or two.
	restStandIn, restEndpoint = startTencentREST()
	opCfg.Resync.AllowedEndpoints = []string{restEndpoint}
	opCfg.Resync.FailureBackoff = resyncFailureBackoff
	opCfg.Resync.PageBackoff = func(int) time.Duration { return 50 * time.Millisecond }
	// The operator as the binary runs it, but for the addresses and leader election.
	flags := &operator.Flags{Config: opCfg, Controllers: true, MetricsAddr: "0", ProbeAddr: "0"}
	var ctx context.Context
	ctx, stopMgr = context.WithCancel(context.Background())
	servers := make(chan *webhookserver.Server, 1)
	operatorDone = make(chan error, 1)
	go func() { operatorDone <- operator.Run(ctx, cfg, flags, func(s *webhookserver.Server) { servers <- s }) }()
	server := <-servers
	Eventually(server.Addr).ShouldNot(BeEmpty())
	webhookURL = "http://" + server.Addr() + opCfg.Webhook.Path
})

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
		Eventually(operatorDone, time.Minute).Should(Receive(BeNil()), "the operator stops cleanly")
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// tencentAnswer is the body Tencent reads.
type tencentAnswer struct {
	ActionStatus string
	ErrorCode    int
	ErrorInfo    string
}

// post sends a callback as Tencent does and returns the HTTP status and the answer.
func post(query url.Values, body []byte) (int, tencentAnswer) {
	GinkgoHelper()
	resp, err := http.Post(webhookURL+"?"+query.Encode(), "application/json", bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var a tencentAnswer
	Expect(json.NewDecoder(resp.Body).Decode(&a)).To(Succeed(), "every answer is the JSON Tencent expects")
	return resp.StatusCode, a
}

// subscribe stores one subscribe callback of the account, naming the subscribers.
func subscribe(account string, subscribers ...string) {
	GinkgoHelper()
	status, answer := post(query(plainApp, webhookserver.CommandAfterAddSubscriber),
		callback(webhookserver.CommandAfterAddSubscriber, account, time.Now().UnixMilli(), subscribers...))
	Expect(status).To(Equal(http.StatusOK), answer.ErrorInfo)
}

// query is the query string Tencent appends for a command.
func query(app, command string) url.Values {
	return url.Values{
		"SdkAppid":        {app},
		"CallbackCommand": {command},
		"contenttype":     {"json"},
		"ClientIP":        {"127.0.0.1"},
		"OptPlatform":     {"RESTAPI"},
	}
}

// callback is a subscriber callback body.
func callback(command, account string, eventTime int64, subscribers ...string) []byte {
	list := make([]map[string]string, 0, len(subscribers))
	for _, s := range subscribers {
		list = append(list, map[string]string{"Subscriber_Account": s})
	}
	b, err := json.Marshal(map[string]any{
		"CallbackCommand":      command,
		"Official_Account":     account,
		"Operator_Account":     "107867",
		"SubscribeAccountList": list,
		"EventTime":            eventTime,
	})
	Expect(err).NotTo(HaveOccurred())
	return b
}

// subscriptionsOf lists the stored events of one Official Account.
func subscriptionsOf(account string) []v1alpha1.OfficialAccountSubscription {
	GinkgoHelper()
	var list v1alpha1.OfficialAccountSubscriptionList
	Expect(k8s.List(context.Background(), &list, client.InNamespace(eventNamespace),
		client.MatchingLabels{v1alpha1.LabelOfficialAccountHash: v1alpha1.OfficialAccountHash(account)})).To(Succeed())
	return list.Items
}

// newSink creates an HTTP sink for one Official Account's events, so that tests sharing
// the event namespace do not see each other's events.
func newSink(name, account string, receiver *testenv.Receiver, mutate ...func(*v1alpha1.SubscriptionSink)) *v1alpha1.SubscriptionSink {
	GinkgoHelper()
	sink := &v1alpha1.SubscriptionSink{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: eventNamespace},
		Spec: v1alpha1.SubscriptionSinkSpec{
			OfficialAccounts: []string{account},
			HTTP:             &v1alpha1.HTTPDestination{URL: receiver.URL},
		},
	}
	for _, m := range mutate {
		m(sink)
	}
	Expect(k8s.Create(context.Background(), sink)).To(Succeed())
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8s.Delete(context.Background(), sink))).To(Succeed()) })
	return sink
}

// sinkCredentials labels a Secret that sinks may use.
var sinkCredentials = map[string]string{v1alpha1.LabelSinkCredentials: "true"}

// sinkNotReady polls why a sink is not Ready, as "Reason: message" ("" while it is Ready
// or not yet reconciled).
func sinkNotReady(sink *v1alpha1.SubscriptionSink) func() string {
	return func() string {
		var got v1alpha1.SubscriptionSink
		_ = k8s.Get(context.Background(), client.ObjectKeyFromObject(sink), &got)
		if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady); c != nil && c.Status == metav1.ConditionFalse {
			return c.Reason + ": " + c.Message
		}
		return ""
	}
}

// accountWithReceiver gives a spec its own Official Account and an HTTP receiver, closed
// when the spec ends.
func accountWithReceiver() (string, *testenv.Receiver) {
	receiver := testenv.NewReceiver()
	DeferCleanup(receiver.Close)
	return uniqueAccount(), receiver
}

// uniqueAccount gives each test its own Official Account ID.
func uniqueAccount() string {
	return fmt.Sprintf("@TOA#_t%d", time.Now().UnixNano())
}
