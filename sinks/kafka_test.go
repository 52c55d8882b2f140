package sinks

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// The Kafka tests run against kfake, franz-go's in-process cluster, which speaks the real
// Kafka wire protocol to the real client: no Kafka broker can run on the build machine (no
// JVM distribution of Kafka in the package registries it reaches).

const kafkaTopic = "officialaccount-subscribers"

func startKafka(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	cluster, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, kafkaTopic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	return cluster
}

func newKafka(t *testing.T, cfg KafkaConfig) *Kafka {
	t.Helper()
	if cfg.Topic == "" {
		cfg.Topic = kafkaTopic
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	sink, err := NewKafka(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	return sink
}

// consumeAll reads every record of the topic, from the start, until it has want of them.
func consumeAll(t *testing.T, brokers []string, want int) []*kgo.Record {
	t.Helper()
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(kafkaTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var records []*kgo.Record
	for len(records) < want {
		fetches := client.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("got %d records, want %d: %v", len(records), want, err)
		}
		records = append(records, fetches.Records()...)
	}
	return records
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func kafkaEvent(name, account string, subscribers ...string) *v1alpha1.OfficialAccountSubscription {
	ev := sampleEvent()
	ev.Name, ev.Spec.OfficialAccount = name, account
	ev.Spec.Subscribers, ev.Spec.SubscriberCount = subscribers, int32(len(subscribers))
	return ev
}

// An event is one record in the CloudEvents Kafka binding's binary mode, keyed by its
// Official Account, acknowledged by the broker before Deliver returns; a split event is
// one record per part; a repeat is produced again (receivers drop it by ce_id).
func TestKafkaProducesEachEventAsABinaryCloudEvent(t *testing.T) {
	cluster := startKafka(t)
	sink := newKafka(t, KafkaConfig{Brokers: cluster.ListenAddrs()})
	if err := sink.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	events := []*v1alpha1.OfficialAccountSubscription{
		kafkaEvent("oasub-a", "@TOA#_news", "jared", "leckie"),
		kafkaEvent("oasub-b-1", "@TOA#_sport", "p1"), kafkaEvent("oasub-b-2", "@TOA#_sport", "p2"), // a split event
		kafkaEvent("oasub-a", "@TOA#_news", "jared", "leckie"), // a repeat
	}
	for _, ev := range events {
		if err := sink.Deliver(WithReplay(context.Background(), ""), ev); err != nil {
			t.Fatalf("Deliver %s: %v", ev.Name, err)
		}
	}
	records := consumeAll(t, cluster.ListenAddrs(), len(events))
	partitionOf := map[string]int32{}
	for _, r := range records {
		var spec v1alpha1.OfficialAccountSubscriptionSpec
		if err := json.Unmarshal(r.Value, &spec); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != spec.OfficialAccount || header(r, "ce_subject") != spec.OfficialAccount ||
			header(r, "ce_specversion") != "1.0" || header(r, "ce_type") != "dev.chat-operators.officialaccount.subscribed" ||
			!strings.HasPrefix(header(r, "ce_id"), "oasub-") || header(r, "ce_source") == "" || header(r, "ce_time") == "" ||
			header(r, "content-type") != "application/json" {
			t.Errorf("record key %q headers %v value %s", r.Key, r.Headers, r.Value)
		}
		if p, seen := partitionOf[string(r.Key)]; seen && p != r.Partition {
			t.Errorf("account %s's events on partitions %d and %d: their order is lost", r.Key, p, r.Partition)
		}
		partitionOf[string(r.Key)] = r.Partition
	}
}

// The Tencent format is the callback body as Tencent sent it, with headers of its own for
// a replay and a dead letter; in CloudEvents they are extension attributes. A dead letter
// has an idempotency key of its own, so that it is not taken for a repeat of its event.
func TestKafkaTencentFormatReplayAndDeadLetter(t *testing.T) {
	cluster := startKafka(t)
	tencent := newKafka(t, KafkaConfig{Brokers: cluster.ListenAddrs(), Format: v1alpha1.HTTPFormatTencent})
	cloudEvents := newKafka(t, KafkaConfig{Brokers: cluster.ListenAddrs()})
	letter := &DeadLetter{Sink: "crm", Reason: "Rejected", Error: "400 Bad Request"}
	replayed := WithReplay(context.Background(), "lost-by-crm")
	for _, delivery := range []struct {
		sink *Kafka
		ctx  context.Context
	}{{tencent, replayed}, {tencent, WithDeadLetter(context.Background(), letter)}, {cloudEvents, WithDeadLetter(context.Background(), letter)}} {
		if err := delivery.sink.Deliver(delivery.ctx, sampleEvent()); err != nil {
			t.Fatal(err)
		}
	}
	records := consumeAll(t, cluster.ListenAddrs(), 3)
	slices.SortFunc(records, func(a, b *kgo.Record) int { return cmp.Compare(a.Offset, b.Offset) })
	var seen []string
	for _, r := range records {
		headers := map[string]string{}
		for _, h := range r.Headers {
			headers[h.Key] = string(h.Value)
		}
		if headers["ce_id"] == "" {
			var body map[string]any
			if err := json.Unmarshal(r.Value, &body); err != nil || body["CallbackCommand"] != "OfficialAccount.CallbackAfterAddSubscriber" {
				t.Errorf("Tencent record %s: want the callback body", r.Value)
			}
		}
		switch {
		case headers["X-Replay"] == "lost-by-crm" && headers["idempotency-key"] == sampleEvent().Name:
			seen = append(seen, "tencent replay")
		case headers["X-Deadletter-Sink"] == "crm" && headers["X-Deadletter-Reason"] == "Rejected" &&
			headers["X-Deadletter-Error"] == "400 Bad Request" && headers["idempotency-key"] == sampleEvent().Name+"/deadletter/crm":
			seen = append(seen, "tencent dead letter")
		case headers["ce_deadlettersink"] == "crm" && headers["ce_deadletterreason"] == "Rejected" &&
			headers["ce_deadlettererror"] == "400 Bad Request" && headers["ce_id"] == sampleEvent().Name &&
			headers["idempotency-key"] == sampleEvent().Name+"/deadletter/crm":
			seen = append(seen, "cloudevents dead letter")
		default:
			t.Errorf("record headers %v", headers)
		}
		for key := range headers {
			if strings.HasPrefix(key, "ce_") && headers["ce_id"] == "" {
				t.Errorf("a Tencent-format record carries %s", key)
			}
		}
	}
	if !slices.Equal(seen, []string{"tencent replay", "tencent dead letter", "cloudevents dead letter"}) {
		t.Errorf("records seen: %v", seen)
	}
}

// A broker that is down fails the delivery within its timeout, to be retried; nothing is
// lost once it is back on the same address.
func TestKafkaBrokerDownThenUp(t *testing.T) {
	port, err := testenv.FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	// The broker keeps its log on disk, so that it comes back as a restarted broker does:
	// with its topics, their IDs and the records it acknowledged.
	broker := []kfake.Opt{kfake.Ports(port), kfake.DataDir(t.TempDir())}
	cluster := startKafka(t, broker...)
	sink := newKafka(t, KafkaConfig{Brokers: []string{"127.0.0.1:" + strconv.Itoa(port)}})
	if err := sink.Deliver(context.Background(), kafkaEvent("oasub-before", "@TOA#_news", "a")); err != nil {
		t.Fatal(err)
	}
	cluster.Close()
	err = sink.Deliver(context.Background(), kafkaEvent("oasub-during", "@TOA#_news", "b"))
	if err == nil || IsPermanent(err) {
		t.Fatalf("with the broker down: err = %v, want one to retry", err)
	}
	again := startKafka(t, broker...)
	deadline := time.Now().Add(30 * time.Second)
	for err != nil && time.Now().Before(deadline) {
		err = sink.Deliver(context.Background(), kafkaEvent("oasub-during", "@TOA#_news", "b"))
	}
	if err != nil {
		t.Fatalf("once the broker is back: %v", err)
	}
	ids := map[string]bool{}
	for _, r := range consumeAll(t, again.ListenAddrs(), 2) {
		ids[header(r, "ce_id")] = true
	}
	if !ids["oasub-before"] || !ids["oasub-during"] {
		t.Fatalf("the topic holds %v, want the record from before the outage and the one retried through it", ids)
	}
}

// A broker that takes a produce request and never answers it, and a server that accepts
// connections and never answers at all, hold a delivery no longer than its timeout (with
// room for the machine's speed: the bound checks that the deadline holds, not its
// precision).
func TestKafkaTimesOutABrokerThatNeverAnswers(t *testing.T) {
	cluster := startKafka(t)
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		return nil, nil, true // taken, never answered
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // held open, never answered
		}
	}()
	for name, brokers := range map[string][]string{"produce request in flight": cluster.ListenAddrs(), "no answer at all": {ln.Addr().String()}} {
		t.Run(name, func(t *testing.T) {
			sink := newKafka(t, KafkaConfig{Brokers: brokers, Timeout: time.Second})
			done := make(chan error, 1)
			go func() { done <- sink.Deliver(context.Background(), sampleEvent()) }()
			select {
			case err := <-done:
				if err == nil || IsPermanent(err) {
					t.Fatalf("err = %v, want a timeout to retry", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the delivery did not end within 15 s with a 1 s timeout")
			}
		})
	}
}

// SASL logs in with each mechanism; wrong credentials and a topic that does not exist fail
// the sink's check, so that it is Ready=False CheckFailed before anything is delivered.
func TestKafkaSASLAndChecks(t *testing.T) {
	for _, mechanism := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mechanism, func(t *testing.T) {
			cluster := startKafka(t, kfake.EnableSASL(), kfake.Superuser(mechanism, "operator", "right"))
			good := newKafka(t, KafkaConfig{Brokers: cluster.ListenAddrs(),
				SASL: KafkaSASL{Mechanism: mechanism, Username: "operator", Password: "right"}})
			if err := good.Check(context.Background()); err != nil {
				t.Fatalf("Check: %v", err)
			}
			if err := good.Deliver(context.Background(), sampleEvent()); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			// kfake closes the connection of a refused login rather than answering
			// SASL_AUTHENTICATION_FAILED as Kafka does, so the check ends at its deadline
			// here; TestClassifyKafkaError covers the broker's refusal.
			wrong := newKafka(t, KafkaConfig{Brokers: cluster.ListenAddrs(), Timeout: time.Second,
				SASL: KafkaSASL{Mechanism: mechanism, Username: "operator", Password: "wrong"}})
			if err := wrong.Check(context.Background()); err == nil || strings.Contains(err.Error(), "wrong") {
				t.Fatalf("Check with a wrong password: err = %v, want one that does not show it", err)
			}
			if err := wrong.Deliver(context.Background(), sampleEvent()); err == nil || IsPermanent(err) {
				t.Fatalf("Deliver with a wrong password: err = %v, want one to retry (a password being rotated)", err)
			}
		})
	}
	cluster := startKafka(t)
	missing := newKafka(t, KafkaConfig{Brokers: cluster.ListenAddrs(), Topic: "no-such-topic"})
	if err := missing.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "topic no-such-topic does not exist") {
		t.Fatalf("Check of a topic that does not exist: err = %v", err)
	}
	readOnly := startKafka(t, kfake.EnableSASL(), kfake.EnableACLs(), kfake.User("PLAIN", "reader", "pw",
		kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: kafkaTopic, Pattern: kmsg.ACLResourcePatternTypeLiteral,
			Operation: kmsg.ACLOperationDescribe, Allow: true}))
	reader := newKafka(t, KafkaConfig{Brokers: readOnly.ListenAddrs(), SASL: KafkaSASL{Mechanism: "PLAIN", Username: "reader", Password: "pw"}})
	if err := reader.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "may not write") {
		t.Fatalf("Check of a user who may only describe the topic: err = %v", err)
	}
	if _, err := NewKafka(KafkaConfig{Brokers: []string{"x:9092"}, Topic: kafkaTopic, SASL: KafkaSASL{Mechanism: "GSSAPI"}}); err == nil {
		t.Fatal("an unknown SASL mechanism was taken")
	}
}

// With TLS, the sink trusts the caBundle given, and refuses a broker whose certificate it
// does not trust.
func TestKafkaTLS(t *testing.T) {
	// httptest's certificate, valid for 127.0.0.1, serves the broker too.
	https := httptest.NewTLSServer(http.NotFoundHandler())
	defer https.Close()
	cluster := startKafka(t, kfake.TLS(&tls.Config{Certificates: https.TLS.Certificates, MinVersion: tls.VersionTLS12}))
	caBundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: https.Certificate().Raw})
	trusting := newKafka(t, KafkaConfig{Brokers: cluster.ListenAddrs(), TLS: true, CABundle: caBundle})
	if err := trusting.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := trusting.Deliver(context.Background(), sampleEvent()); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	systemRoots := newKafka(t, KafkaConfig{Brokers: cluster.ListenAddrs(), TLS: true, Timeout: time.Second})
	if err := systemRoots.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a broker whose certificate the system roots do not trust: err = %v", err)
	}
	if _, err := NewKafka(KafkaConfig{Brokers: cluster.ListenAddrs(), Topic: kafkaTopic, TLS: true, CABundle: []byte("no PEM")}); err == nil {
		t.Fatal("a caBundle without certificates was taken")
	}
}

// What the broker answers decides whether a delivery is retried; none of it is the event's
// fault but a record the broker refuses as such.
func TestClassifyKafkaError(t *testing.T) {
	tests := []struct {
		err       error
		permanent bool
		says      string
	}{
		{kerr.SaslAuthenticationFailed, false, "refused the credentials"},
		{kerr.TopicAuthorizationFailed, false, "refused the user the rights"},
		{kerr.UnknownTopicOrPartition, false, "topic t does not exist"},
		{kerr.MessageTooLarge, true, "refused the record"},
		{fmt.Errorf("wrapped: %w", kerr.InvalidRecord), true, "refused the record"},
		{kerr.NotLeaderForPartition, false, "topic t"},
		{context.DeadlineExceeded, false, "deadline"},
	}
	for _, tt := range tests {
		got := classifyKafkaError(tt.err, "t")
		if IsPermanent(got) != tt.permanent || !strings.Contains(got.Error(), tt.says) {
			t.Errorf("%v: %v (permanent %v), want permanent %v saying %q", tt.err, got, IsPermanent(got), tt.permanent, tt.says)
		}
	}
}
