package sinks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	neturl "net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// DefaultNATSSubject is the subject a nats sink publishes to when it names none.
const DefaultNATSSubject = "officialaccount.{action}"

// NATSCredentials are the ways a NATS server may ask a client to authenticate.
type NATSCredentials struct {
	User, Password, Token string
	Creds                 []byte // a .creds file: a user JWT and its NKey seed
}

// NATS publishes each event once per delivery; with JetStream it waits for the stream's
// acknowledgement, and the Nats-Msg-Id header lets the stream drop a redelivery.
type NATS struct {
	conn         *nats.Conn
	js           jetstream.JetStream
	subject      string
	jetStream    bool
	createStream bool
}

// NewNATS connects in the background: a server that is down now is retried, and its
// deliveries fail (and are retried) until it is back.
func NewNATS(url string, creds NATSCredentials, subject string, useJetStream, createStream bool) (*NATS, error) {
	opts := []nats.Option{
		nats.Name("officialaccount-operator"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// No buffering while disconnected: a publish then fails and is retried with backoff.
		nats.ReconnectBufSize(-1),
	}
	auth, err := creds.options()
	if err != nil {
		return nil, err
	}
	conn, err := nats.Connect(url, append(opts, auth...)...)
	if err != nil {
		// A URL that does not parse comes back quoted whole, credentials included: keep
		// only what is wrong with it.
		var urlErr *neturl.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return nil, fmt.Errorf("NATS %s: %w", Redacted(url), err)
	}
	js, err := jetstream.New(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if subject == "" {
		subject = DefaultNATSSubject
	}
	return &NATS{conn: conn, js: js, subject: subject, jetStream: useJetStream, createStream: createStream}, nil
}

func (c NATSCredentials) options() ([]nats.Option, error) {
	switch {
	case len(c.Creds) > 0:
		jwt, err := nkeys.ParseDecoratedJWT(c.Creds)
		if err != nil {
			return nil, errors.New("the creds file holds no user JWT")
		}
		kp, err := nkeys.ParseDecoratedNKey(c.Creds)
		if err != nil {
			return nil, errors.New("the creds file holds no NKey seed")
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, errors.New("the creds file's NKey is no seed")
		}
		return []nats.Option{nats.UserJWTAndSeed(jwt, string(seed))}, nil
	case c.Token != "":
		return []nats.Option{nats.Token(c.Token)}, nil
	case c.User != "":
		return []nats.Option{nats.UserInfo(c.User, c.Password)}, nil
	}
	return nil, nil
}

// Close closes the connection.
func (n *NATS) Close() error {
	n.conn.Close()
	return nil
}

// subjectFor fills the subject's placeholders with the event's values.
func (n *NATS) subjectFor(event *v1alpha1.OfficialAccountSubscription) string {
	return strings.NewReplacer(
		"{action}", strings.ToLower(string(event.Spec.Action)),
		"{sdkAppID}", event.Spec.SDKAppID,
		"{officialAccountHash}", event.Labels[v1alpha1.LabelOfficialAccountHash],
	).Replace(n.subject)
}

// natsTimeout bounds one publish when the caller's context sets no deadline.
const natsTimeout = 10 * time.Second

// Deliver publishes the event as a structured CloudEvent.
func (n *NATS) Deliver(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, natsTimeout)
		defer cancel()
	}
	body, err := structuredCloudEvent(ctx, event)
	if err != nil {
		return Permanent(err)
	}
	msg := nats.NewMsg(n.subjectFor(event))
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, natsMessageID(ctx, event))
	msg.Header.Set("Content-Type", "application/cloudevents+json")
	if !n.jetStream {
		if err := n.conn.PublishMsg(msg); err != nil {
			return fmt.Errorf("NATS publish to %s: %w", msg.Subject, err)
		}
		if err := n.conn.FlushWithContext(ctx); err != nil {
			return fmt.Errorf("NATS publish to %s: %w", msg.Subject, err)
		}
		return nil
	}
	_, err = n.js.PublishMsg(ctx, msg)
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		if !n.createStream {
			return Permanent(fmt.Errorf("no JetStream stream is bound to subject %q: create one, or set createStream", msg.Subject))
		}
		if err := n.ensureStream(ctx); err != nil {
			return err
		}
		_, err = n.js.PublishMsg(ctx, msg)
	}
	if err != nil {
		return fmt.Errorf("JetStream publish to %s: %w", msg.Subject, err)
	}
	return nil
}

// ensureStream creates a stream for every subject the sink can publish to.
func (n *NATS) ensureStream(ctx context.Context) error {
	wildcard := strings.NewReplacer("{action}", "*", "{sdkAppID}", "*", "{officialAccountHash}", "*").Replace(n.subject)
	name := "OFFICIALACCOUNT_" + strings.ToUpper(strings.NewReplacer(".", "_", "*", "ALL", ">", "ALL").Replace(wildcard))
	_, err := n.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{wildcard}})
	if err != nil {
		return fmt.Errorf("creating JetStream stream %s for %s: %w", name, wildcard, err)
	}
	return nil
}

// structuredCloudEvent is the event as a CloudEvents 1.0 JSON document: the same
// attributes as the HTTP sink's headers, the resource's spec as data.
// A dead letter carries the extension attributes deadlettersink, deadletterreason and
// deadlettererror; a replay's delivery, replay (extensionAttributes).
func structuredCloudEvent(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) ([]byte, error) {
	data, err := cloudEventData(event)
	if err != nil {
		return nil, err
	}
	doc := map[string]any{"datacontenttype": "application/json", "data": json.RawMessage(data)}
	for name, value := range cloudEventAttributes(event) {
		doc[name] = value
	}
	for name, value := range extensionAttributes(ctx) {
		doc[name] = value
	}
	return json.Marshal(doc)
}
