package sinks

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

func natsEvent(name string) *v1alpha1.OfficialAccountSubscription {
	e := sampleEvent()
	e.Name = name
	return e
}

// subscriberStream makes the stream an app would have for the subscribe events.
func subscriberStream(t *testing.T, url string) jetstream.Stream {
	t.Helper()
	conn, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	js, _ := jetstream.New(conn)
	stream, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "SUBSCRIBERS", Subjects: []string{"officialaccount.>"}})
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

func messages(t *testing.T, stream jetstream.Stream) uint64 {
	t.Helper()
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestNATSPublishesOnceEvenWhenDeliveredTwice(t *testing.T) {
	srv := testenv.StartNATS(t, "")
	stream := subscriberStream(t, srv.ClientURL())
	sink, err := NewNATS(srv.ClientURL(), NATSCredentials{}, "", true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	for range 2 {
		if err := sink.Deliver(context.Background(), natsEvent("oasub-twice")); err != nil {
			t.Fatal(err)
		}
	}
	if n := messages(t, stream); n != 1 {
		t.Fatalf("the stream holds %d messages, want 1 (Nats-Msg-Id deduplication)", n)
	}
	msg, err := stream.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	var ce struct {
		ID, Type, Subject string
		Data              v1alpha1.OfficialAccountSubscriptionSpec
	}
	if err := json.Unmarshal(msg.Data, &ce); err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "officialaccount.subscribe" || ce.ID != "oasub-twice" || ce.Type != "dev.chat-operators.officialaccount.subscribed" ||
		ce.Subject != "@TOA#_test_for_penn" || len(ce.Data.Subscribers) != 2 || msg.Header.Get("Nats-Msg-Id") != "oasub-twice" {
		t.Fatalf("message on %s: %+v, headers %v", msg.Subject, ce, msg.Header)
	}
}

func TestNATSWithoutAStreamFailsClearlyUnlessAskedToCreateOne(t *testing.T) {
	srv := testenv.StartNATS(t, "")
	sink, _ := NewNATS(srv.ClientURL(), NATSCredentials{}, "", true, false)
	defer sink.Close()
	err := sink.Deliver(context.Background(), natsEvent("oasub-nostream"))
	if !IsPermanent(err) || !strings.Contains(err.Error(), `no JetStream stream is bound to subject "officialaccount.subscribe"`) {
		t.Fatalf("err = %v", err)
	}
	creating, _ := NewNATS(srv.ClientURL(), NATSCredentials{}, "", true, true)
	defer creating.Close()
	if err := creating.Deliver(context.Background(), natsEvent("oasub-nostream")); err != nil {
		t.Fatalf("with createStream: %v", err)
	}
}

func TestNATSServerDownThenUp(t *testing.T) {
	dir := t.TempDir()
	srv := testenv.StartNATS(t, dir)
	url := srv.ClientURL()
	subscriberStream(t, url)
	sink, _ := NewNATS(url, NATSCredentials{}, "", true, false)
	defer sink.Close()
	port := srv.Addr().(*net.TCPAddr).Port
	srv.Shutdown()
	srv.WaitForShutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := sink.Deliver(ctx, natsEvent("oasub-down")); err == nil || IsPermanent(err) {
		t.Fatalf("with the server down: err = %v, want a transient error", err)
	}
	testenv.RestartNATS(t, port, dir)
	// The reconciler retries with backoff; the connection comes back within a few tries.
	var err error
	for range 20 {
		if err = sink.Deliver(context.Background(), natsEvent("oasub-down")); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("never delivered after the server came back: %v", err)
}

func TestNATSCoreAndCredentials(t *testing.T) {
	srv := testenv.StartNATSWithOptions(t, &server.Options{Username: "operator", Password: "s3cret"})
	good, _ := NewNATS(srv.ClientURL(), NATSCredentials{User: "operator", Password: "s3cret"}, "apps.{sdkAppID}.{action}", false, false)
	defer good.Close()
	conn, err := nats.Connect(srv.ClientURL(), nats.UserInfo("operator", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sub, _ := conn.SubscribeSync("apps.1400000000.subscribe")
	_ = conn.Flush()
	if err := good.Deliver(context.Background(), natsEvent("oasub-core")); err != nil {
		t.Fatal(err)
	}
	if msg, err := sub.NextMsg(5 * time.Second); err != nil || msg.Header.Get("Nats-Msg-Id") != "oasub-core" {
		t.Fatalf("core NATS message: %v, %v", msg, err)
	}
	bad, _ := NewNATS(srv.ClientURL(), NATSCredentials{User: "operator", Password: "wrong"}, "", false, false)
	defer bad.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := bad.Deliver(ctx, natsEvent("oasub-bad")); err == nil {
		t.Fatal("published with a wrong password")
	}
}

func TestNATSTokenAndCredsFile(t *testing.T) {
	srv := testenv.StartNATSWithOptions(t, &server.Options{Authorization: "t0ken"})
	withToken, _ := NewNATS(srv.ClientURL(), NATSCredentials{Token: "t0ken"}, "", false, false)
	defer withToken.Close()
	if err := withToken.Deliver(context.Background(), natsEvent("oasub-token")); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	if _, err := NewNATS(srv.ClientURL(), NATSCredentials{Creds: []byte("not a creds file")}, "", false, false); err == nil ||
		!strings.Contains(err.Error(), "creds file") {
		t.Fatalf("a malformed creds file: err = %v", err)
	}
}

// A dead letter published to NATS carries the extension attributes in the CloudEvent.
func TestStructuredCloudEventOfADeadLetter(t *testing.T) {
	letter := &DeadLetter{Sink: "crm", Reason: "RetriesExhausted", Error: "503"}
	body, err := structuredCloudEvent(WithDeadLetter(context.Background(), letter), sampleEvent())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["deadlettersink"] != "crm" || doc["deadletterreason"] != "RetriesExhausted" || doc["deadlettererror"] != "503" {
		t.Fatalf("CloudEvent %s: want the dead-letter attributes", body)
	}
}

// A replay published within JetStream's duplicate window is stored, not taken for a
// repeat of the event: its Nats-Msg-Id names the replay, its CloudEvent keeps the event's
// id and carries the replay's name. A second delivery of the same replay is dropped.
func TestNATSReplayIsNoRepeatOfTheEvent(t *testing.T) {
	srv := testenv.StartNATS(t, "")
	stream := subscriberStream(t, srv.ClientURL())
	sink, err := NewNATS(srv.ClientURL(), NATSCredentials{}, "", true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	replayed := WithReplay(context.Background(), "lost-by-crm")
	for _, ctx := range []context.Context{context.Background(), replayed, replayed} {
		if err := sink.Deliver(ctx, natsEvent("oasub-replayed")); err != nil {
			t.Fatal(err)
		}
	}
	if n := messages(t, stream); n != 2 {
		t.Fatalf("the stream holds %d messages, want 2: the event and its replay once", n)
	}
	msg, err := stream.GetMsg(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	var ce struct{ ID, Replay string }
	if err := json.Unmarshal(msg.Data, &ce); err != nil {
		t.Fatal(err)
	}
	if ce.ID != "oasub-replayed" || ce.Replay != "lost-by-crm" || msg.Header.Get("Nats-Msg-Id") != "oasub-replayed/replay/lost-by-crm" {
		t.Fatalf("replayed message: %+v, headers %v", ce, msg.Header)
	}
}
