// Package config tests the kustomize configuration: it renders, and its samples apply to
// a real kube-apiserver with the CRDs installed.
package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/operator"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// kubectl is the one `make test` provides with kube-apiserver, or the machine's.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	bin := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("kubectl"); err != nil {
			t.Fatal("no kubectl: run the tests with `make test`")
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = testenv.RepoRoot()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestDefaultRenders(t *testing.T) {
	out := kubectl(t, "kustomize", "config/default")
	for _, want := range []string{
		"kind: CustomResourceDefinition", "name: officialaccountsubscriptions.officialaccount.chat-operators.dev",
		"kind: Deployment", "name: officialaccount-operator-controller-manager",
		"kind: RoleBinding", "name: officialaccount-operator-manager-role",
		"image: ghcr.io/chat-operators/officialaccount-operator:0.1.0",
		"namespace: officialaccount-operator-system",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config/default renders without %q", want)
		}
	}
	if strings.Contains(out, "kind: ClusterRoleBinding") {
		t.Error("config/default grants cluster-wide rights; the operator needs its namespace only")
	}
}

func TestSamplesApplyToARealAPIServer(t *testing.T) {
	env := testenv.NewEnvironment()
	cfg, kubeconfig := testenv.StartForTest(t, env)
	c, err := client.New(cfg, client.Options{Scheme: operator.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "samples"}}); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "--kubeconfig", kubeconfig, "apply", "-n", "samples", "-k", "config/samples")

	var sink v1alpha1.SubscriptionSink
	if err := c.Get(ctx, client.ObjectKey{Namespace: "samples", Name: "follower-service"}, &sink); err != nil {
		t.Fatal(err)
	}
	if sink.Spec.HTTP == nil || sink.Spec.HTTP.Format != v1alpha1.HTTPFormatCloudEvents {
		t.Errorf("sample sink stored as %+v", sink.Spec)
	}
	var pgSink v1alpha1.SubscriptionSink
	if err := c.Get(ctx, client.ObjectKey{Namespace: "samples", Name: "followers-db"}, &pgSink); err != nil {
		t.Fatal(err)
	}
	if pgSink.Spec.Postgres == nil || pgSink.Spec.Postgres.Table != "officialaccount_subscribers" {
		t.Errorf("sample postgres sink stored as %+v", pgSink.Spec)
	}
	var natsSink v1alpha1.SubscriptionSink
	if err := c.Get(ctx, client.ObjectKey{Namespace: "samples", Name: "broker"}, &natsSink); err != nil {
		t.Fatal(err)
	}
	if natsSink.Spec.NATS == nil || natsSink.Spec.NATS.JetStream == nil || !*natsSink.Spec.NATS.JetStream {
		t.Errorf("sample nats sink stored as %+v", natsSink.Spec)
	}
	var kafkaSink v1alpha1.SubscriptionSink
	if err := c.Get(ctx, client.ObjectKey{Namespace: "samples", Name: "ckafka"}, &kafkaSink); err != nil {
		t.Fatal(err)
	}
	if k := kafkaSink.Spec.Kafka; k == nil || k.SASL == nil || k.TLS == nil || k.Timeout == nil || k.Timeout.Duration != 10*time.Second {
		t.Errorf("sample kafka sink stored as %+v", kafkaSink.Spec)
	}
	var mysqlSink v1alpha1.SubscriptionSink
	if err := c.Get(ctx, client.ObjectKey{Namespace: "samples", Name: "followers-mysql"}, &mysqlSink); err != nil {
		t.Fatal(err)
	}
	if m := mysqlSink.Spec.MySQL; m == nil || m.Table != "officialaccount_subscribers" || m.CreateTable == nil || !*m.CreateTable ||
		m.Timeout == nil || m.Timeout.Duration != 10*time.Second {
		t.Errorf("sample mysql sink stored as %+v", mysqlSink.Spec)
	}
	var redisSink v1alpha1.SubscriptionSink
	if err := c.Get(ctx, client.ObjectKey{Namespace: "samples", Name: "followers-cache"}, &redisSink); err != nil {
		t.Fatal(err)
	}
	if r := redisSink.Spec.Redis; r == nil || r.KeyPrefix != "oasub" || r.Timeout == nil || r.URLSecretRef.Key != "url" {
		t.Errorf("sample redis sink stored as %+v", redisSink.Spec)
	}
	var resync v1alpha1.OfficialAccountResync
	if err := c.Get(ctx, client.ObjectKey{Namespace: "samples", Name: "news"}, &resync); err != nil {
		t.Fatal(err)
	}
	if resync.Spec.Interval == nil || resync.Spec.Interval.Duration != 6*time.Hour || len(resync.Spec.OfficialAccounts) != 1 {
		t.Errorf("sample resync stored as %+v", resync.Spec)
	}
	var replay v1alpha1.SubscriptionReplay
	if err := c.Get(ctx, client.ObjectKey{Namespace: "samples", Name: "crm-lost-2026-12-01"}, &replay); err != nil {
		t.Fatal(err)
	}
	if !replay.Spec.DryRun || replay.Spec.SinkName != "follower-service" || replay.Spec.EventTimeAfter == nil ||
		len(replay.Spec.States) != 1 || replay.Spec.States[0] != v1alpha1.ReplayDelivered {
		t.Errorf("sample replay stored as %+v", replay.Spec)
	}
	var sub v1alpha1.OfficialAccountSubscription
	if err := c.Get(ctx, client.ObjectKey{Namespace: "samples", Name: "oasub-303f0340415f9e3bb1a7f96e"}, &sub); err != nil {
		t.Fatal(err)
	}
	// The API server enforces what the API promises: the spec is immutable.
	sub.Spec.Subscribers = append(sub.Spec.Subscribers, "mallory")
	sub.Spec.SubscriberCount++
	if err := c.Update(ctx, &sub); err == nil || !strings.Contains(err.Error(), "field is immutable") {
		t.Errorf("changing a stored event's spec: err = %v, want the immutability rule", err)
	}
}

func TestTheAPIServerEnforcesTheCRDRules(t *testing.T) {
	cfg, _ := testenv.StartForTest(t, testenv.NewEnvironment())
	c, err := client.New(cfg, client.Options{Scheme: operator.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		obj     client.Object
		wantErr string
	}{
		"a sink without destination": {
			obj:     &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: "none", Namespace: "default"}},
			wantErr: "set exactly one destination",
		},
		"a sink with a relative URL": {
			obj: &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: "rel", Namespace: "default"},
				Spec: v1alpha1.SubscriptionSinkSpec{HTTP: &v1alpha1.HTTPDestination{URL: "/hooks"}}},
			wantErr: "absolute http:// or https:// URL",
		},
		"an event whose count disagrees with its subscribers": {
			obj: &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Name: "bad-count", Namespace: "default"},
				Spec: v1alpha1.OfficialAccountSubscriptionSpec{SDKAppID: "1", CallbackCommand: "c", Action: v1alpha1.ActionSubscribe,
					OfficialAccount: "@TOA#_a", Subscribers: []string{"a"}, SubscriberCount: 2, EventTime: 1, ReceivedTime: metav1.Now()}},
			wantErr: "subscriberCount must equal the number of subscribers",
		},
		"a callback that names no subscriber": {
			obj: &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Name: "no-one", Namespace: "default"},
				Spec: v1alpha1.OfficialAccountSubscriptionSpec{SDKAppID: "1", CallbackCommand: "c", Action: v1alpha1.ActionSubscribe,
					OfficialAccount: "@TOA#_a", Subscribers: []string{}, EventTime: 1, ReceivedTime: metav1.Now()}},
			wantErr: "a callback names at least one subscriber",
		},
		"a snapshot that says not which part it is": {
			obj: &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Name: "no-part", Namespace: "default"},
				Spec: v1alpha1.OfficialAccountSubscriptionSpec{SDKAppID: "1", CallbackCommand: v1alpha1.CommandSnapshot, Action: v1alpha1.ActionSnapshot,
					OfficialAccount: "@TOA#_a", Subscribers: []string{}, EventTime: 1, ReceivedTime: metav1.Now()}},
			wantErr: "snapshot is set on Snapshot events and only on them",
		},
		"an AccountDestroyed event that names subscribers": {
			obj: &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Name: "destroyed-with-some", Namespace: "default"},
				Spec: v1alpha1.OfficialAccountSubscriptionSpec{SDKAppID: "1", CallbackCommand: "c", Action: v1alpha1.ActionAccountDestroyed,
					OfficialAccount: "@TOA#_a", Subscribers: []string{"a"}, SubscriberCount: 1, EventTime: 1, ReceivedTime: metav1.Now()}},
			wantErr: "an AccountDestroyed event names no subscribers",
		},
		"a resync endpoint over plain http beyond the loopback address": {
			obj: &v1alpha1.OfficialAccountResync{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "default"},
				Spec: v1alpha1.OfficialAccountResyncSpec{SDKAppID: "1400000000", Endpoint: "http://console.tim.qq.com",
					OfficialAccounts: []string{"@TOA#_a"}}},
			wantErr: "endpoint must be https",
		},
		"a resync endpoint with a query": {
			obj: &v1alpha1.OfficialAccountResync{ObjectMeta: metav1.ObjectMeta{Name: "query", Namespace: "default"},
				Spec: v1alpha1.OfficialAccountResyncSpec{SDKAppID: "1400000000", Endpoint: "https://console.tim.qq.com/?usersig=x",
					OfficialAccounts: []string{"@TOA#_a"}}},
			wantErr: "endpoint must carry no user, query or fragment",
		},
		"a resync with both a region and an endpoint": {
			obj: &v1alpha1.OfficialAccountResync{ObjectMeta: metav1.ObjectMeta{Name: "both", Namespace: "default"},
				Spec: v1alpha1.OfficialAccountResyncSpec{SDKAppID: "1400000000", Region: "singapore", Endpoint: "https://example.com",
					OfficialAccounts: []string{"@TOA#_a"}}},
			wantErr: "set exactly one of region and endpoint",
		},
		"a sink with two destinations": {
			obj: &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: "two", Namespace: "default"},
				Spec: v1alpha1.SubscriptionSinkSpec{HTTP: &v1alpha1.HTTPDestination{URL: "https://a.example"},
					Kafka: &v1alpha1.KafkaDestination{Brokers: []string{"b:9092"}, Topic: "t"}}},
			wantErr: "set exactly one destination: http, postgres, mysql, nats, kafka or redis",
		},
		"a mysql sink whose table is too long for the tables beside it": {
			obj: &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: "long-table", Namespace: "default"},
				Spec: v1alpha1.SubscriptionSinkSpec{MySQL: &v1alpha1.MySQLDestination{
					DSNSecretRef: corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "dsn"},
					Table:        "app." + strings.Repeat("t", 44)}}},
			wantErr: "should match",
		},
		"a kafka sink with an unknown SASL mechanism": {
			obj: &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: "gssapi", Namespace: "default"},
				Spec: v1alpha1.SubscriptionSinkSpec{Kafka: &v1alpha1.KafkaDestination{Brokers: []string{"b:9092"}, Topic: "t",
					SASL: &v1alpha1.KafkaSASL{Mechanism: "GSSAPI", CredentialsSecretRef: corev1.LocalObjectReference{Name: "s"}}}}},
			wantErr: "Unsupported value",
		},
		"a kafka sink whose broker is a URL": {
			obj: &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: "url-broker", Namespace: "default"},
				Spec: v1alpha1.SubscriptionSinkSpec{Kafka: &v1alpha1.KafkaDestination{Brokers: []string{"kafka://b:9092"}, Topic: "t"}}},
			wantErr: "should match",
		},
		"a kafka sink with a timeout the producer refuses": {
			obj: &v1alpha1.SubscriptionSink{ObjectMeta: metav1.ObjectMeta{Name: "short", Namespace: "default"},
				Spec: v1alpha1.SubscriptionSinkSpec{Kafka: &v1alpha1.KafkaDestination{Brokers: []string{"b:9092"}, Topic: "t",
					Timeout: &metav1.Duration{Duration: 500 * time.Millisecond}}}},
			wantErr: "timeout is at least 1s",
		},
		"a replay whose name is too long for its label": {
			obj: &v1alpha1.SubscriptionReplay{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("r", 64), Namespace: "default"},
				Spec: v1alpha1.SubscriptionReplaySpec{SinkName: "crm"}},
			wantErr: "a replay's name is at most 63 characters",
		},
		"a replay named as the sinks' dead letters are": {
			obj: &v1alpha1.SubscriptionReplay{ObjectMeta: metav1.ObjectMeta{Name: "deadletter", Namespace: "default"},
				Spec: v1alpha1.SubscriptionReplaySpec{SinkName: "crm"}},
			wantErr: "a replay may not be named deadletter",
		},
		"a replay of a state it cannot select": {
			obj: &v1alpha1.SubscriptionReplay{ObjectMeta: metav1.ObjectMeta{Name: "pending", Namespace: "default"},
				Spec: v1alpha1.SubscriptionReplaySpec{SinkName: "crm", States: []v1alpha1.ReplayState{"Pending"}}},
			wantErr: "Unsupported value",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := c.Create(context.Background(), tt.obj)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// The API server keeps a stored event as Tencent sent it: any spec field changed, added or
// removed is refused, while labels and the status stay writable.
func TestTheAPIServerKeepsAStoredEventAsSent(t *testing.T) {
	cfg, _ := testenv.StartForTest(t, testenv.NewEnvironment())
	c, err := client.New(cfg, client.Options{Scheme: operator.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store := func(t *testing.T, name string, withOptional bool) *v1alpha1.OfficialAccountSubscription {
		t.Helper()
		sub := &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: v1alpha1.OfficialAccountSubscriptionSpec{SDKAppID: "1400000000", CallbackCommand: "OfficialAccount.CallbackAfterAddSubscriber",
				Action: v1alpha1.ActionSubscribe, OfficialAccount: "@TOA#_a", Subscribers: []string{"jared"}, SubscriberCount: 1,
				EventTime: 1670574414123, ReceivedTime: metav1.Now()}}
		if withOptional {
			sub.Spec.OperatorAccount, sub.Spec.ClientIP, sub.Spec.OptPlatform = "107867", "127.0.0.1", "RESTAPI"
		}
		if err := c.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		return sub
	}
	tests := map[string]struct {
		withOptional bool
		change       func(*v1alpha1.OfficialAccountSubscriptionSpec)
		wantErr      string // empty: the update must succeed
	}{
		"sdkAppID changed":        {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.SDKAppID = "1400000001" }, wantErr: "field is immutable"},
		"callbackCommand changed": {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.CallbackCommand = "x" }, wantErr: "field is immutable"},
		"action changed":          {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.Action = v1alpha1.ActionUnsubscribe }, wantErr: "field is immutable"},
		"officialAccount changed": {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.OfficialAccount = "@TOA#_b" }, wantErr: "field is immutable"},
		"subscribers changed":     {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.Subscribers = []string{"mallory"} }, wantErr: "field is immutable"},
		"a subscriber added": {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) {
			s.Subscribers, s.SubscriberCount = append(s.Subscribers, "mallory"), 2
		}, wantErr: "field is immutable"},
		"eventTime changed": {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.EventTime++ }, wantErr: "field is immutable"},
		"receivedTime changed": {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) {
			s.ReceivedTime = metav1.NewTime(s.ReceivedTime.Add(time.Hour))
		}, wantErr: "field is immutable"},
		"operatorAccount changed": {withOptional: true, change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.OperatorAccount = "x" }, wantErr: "field is immutable"},
		"clientIP changed":        {withOptional: true, change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.ClientIP = "10.0.0.1" }, wantErr: "field is immutable"},
		"optPlatform changed":     {withOptional: true, change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.OptPlatform = "Web" }, wantErr: "field is immutable"},
		"operatorAccount added":   {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.OperatorAccount = "x" }, wantErr: "optional fields are immutable"},
		"clientIP added":          {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.ClientIP = "10.0.0.1" }, wantErr: "optional fields are immutable"},
		"ownerAccount added":      {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.OwnerAccount = "x" }, wantErr: "optional fields are immutable"},
		"accountName added":       {change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.AccountName = "x" }, wantErr: "optional fields are immutable"},
		"optPlatform removed":     {withOptional: true, change: func(s *v1alpha1.OfficialAccountSubscriptionSpec) { s.OptPlatform = "" }, wantErr: "optional fields are immutable"},
		"the spec left as it was": {withOptional: true, change: func(*v1alpha1.OfficialAccountSubscriptionSpec) {}},
	}
	i := 0
	for name, tt := range tests {
		i++
		t.Run(name, func(t *testing.T) {
			sub := store(t, fmt.Sprintf("event-%d", i), tt.withOptional)
			tt.change(&sub.Spec)
			sub.Labels = map[string]string{"touched": "yes"}
			err := c.Update(ctx, sub)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("update refused: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}

	sub := store(t, "status-writable", true)
	sub.Status.ObservedGeneration = sub.Generation
	if err := c.Status().Update(ctx, sub); err != nil {
		t.Fatalf("status write refused: %v", err)
	}
}

// Each spec field needs its own immutability rule, and an optional one a presence rule
// too; a field added to the API without them would be mutable. This guards the CRD.
func TestEverySpecFieldOfAnEventHasAnImmutabilityRule(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases",
		"officialaccount.chat-operators.dev_officialaccountsubscriptions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		t.Fatal(err)
	}
	for _, version := range crd.Spec.Versions {
		spec := version.Schema.OpenAPIV3Schema.Properties["spec"]
		var specRules []string
		for _, rule := range spec.XValidations {
			specRules = append(specRules, rule.Rule)
		}
		for name, field := range spec.Properties {
			if !slices.ContainsFunc(field.XValidations, func(r apiextensionsv1.ValidationRule) bool { return r.Rule == "self == oldSelf" }) {
				t.Errorf("%s: spec.%s has no `self == oldSelf` rule", version.Name, name)
			}
			presence := fmt.Sprintf("has(self.%s) == has(oldSelf.%s)", name, name)
			if !slices.Contains(spec.Required, name) && !strings.Contains(strings.Join(specRules, "\n"), presence) {
				t.Errorf("%s: spec.%s is optional and no spec rule has %q", version.Name, name, presence)
			}
		}
		if len(spec.Properties) == 0 {
			t.Errorf("%s: no spec properties in the CRD", version.Name)
		}
	}
}
