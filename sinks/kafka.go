package sinks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// DefaultKafkaTimeout applies when a sink sets none.
const DefaultKafkaTimeout = 10 * time.Second

// KafkaConfig is what a Kafka sink is built from.
type KafkaConfig struct {
	Brokers []string
	Topic   string
	Format  v1alpha1.HTTPFormat
	// TLS connects with TLS, trusting CABundle (PEM) or, when it is empty, the system's roots.
	TLS      bool
	CABundle []byte
	// SASL, when Mechanism is set: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	SASL    KafkaSASL
	Timeout time.Duration
}

// KafkaSASL are the credentials a Kafka sink logs in with.
type KafkaSASL struct {
	Mechanism, Username, Password string
}

// Kafka produces each event as one record, keyed by the Official Account ID so that one
// account's events stay in order within a partition, with an idempotent producer and
// acks=all: a delivery is done when every in-sync replica has the record.
type Kafka struct {
	client  *kgo.Client
	topic   string
	format  v1alpha1.HTTPFormat
	timeout time.Duration
}

// NewKafka makes a sink with its own client; it connects on first use.
func NewKafka(cfg KafkaConfig) (*Kafka, error) {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultKafkaTimeout
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("officialaccount-operator"),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent writes are franz-go's default, and need all acks
		kgo.DialTimeout(timeout),
		// A record not acknowledged within the timeout fails, whatever the client's retries:
		// the delivery is retried with the sink's backoff instead.
		kgo.RecordDeliveryTimeout(timeout),
		kgo.ProduceRequestTimeout(timeout),
		// A delivery ends by its deadline even while its request is in flight to a broker
		// that hangs: the idempotent producer still drops its own retries' repeats, and a
		// record the broker stored after all comes again with the delivery's retry, with
		// the event's ce_id (at-least-once, as every sink kind).
		kgo.AllowIdempotentProduceCancellation(),
		kgo.ProducerLinger(0),
	}
	if cfg.TLS {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if len(cfg.CABundle) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(cfg.CABundle) {
				return nil, errors.New("caBundle holds no PEM certificate")
			}
			tlsCfg.RootCAs = pool
		}
		opts = append(opts, kgo.DialTLSConfig(tlsCfg))
	}
	if cfg.SASL.Mechanism != "" {
		mechanism, err := cfg.SASL.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(mechanism))
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("Kafka: %w", err)
	}
	format := cfg.Format
	if format == "" {
		format = v1alpha1.HTTPFormatCloudEvents
	}
	return &Kafka{client: client, topic: cfg.Topic, format: format, timeout: timeout}, nil
}

func (s KafkaSASL) mechanism() (sasl.Mechanism, error) {
	switch s.Mechanism {
	case "PLAIN":
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("SASL mechanism %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism)
}

// Close closes the client; records it still holds fail.
func (k *Kafka) Close() error {
	k.client.Close()
	return nil
}

// Deliver produces the event and waits for the brokers' acknowledgement.
func (k *Kafka) Deliver(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	record, err := k.record(ctx, event)
	if err != nil {
		return Permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	return classifyKafkaError(k.client.ProduceSync(ctx, record).FirstErr(), k.topic)
}

// Check tells whether deliveries can succeed: a broker answers, takes the credentials,
// knows the topic, lets the user write to it, and gives the idempotent producer its id
// (which older brokers grant only with IdempotentWrite on the cluster).
func (k *Kafka) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	req.IncludeTopicAuthorizedOperations = true
	topic := kmsg.NewMetadataRequestTopic()
	topic.Topic = kmsg.StringPtr(k.topic)
	req.Topics = append(req.Topics, topic)
	resp, err := req.RequestWith(ctx, k.client)
	if err != nil {
		return Permanent(classifyKafkaError(err, k.topic))
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return Permanent(classifyKafkaError(err, k.topic))
		}
		// A broker that was not asked, or cannot tell, answers math.MinInt32.
		if ops := t.AuthorizedOperations; ops != math.MinInt32 && ops&(1<<int32(kmsg.ACLOperationWrite)) == 0 {
			return Permanent(fmt.Errorf("Kafka: the user may not write to topic %s", k.topic))
		}
	}
	if _, _, err := k.client.ProducerID(ctx); err != nil {
		return Permanent(classifyKafkaError(err, k.topic))
	}
	return nil
}

// record is the event as a Kafka record: in the CloudEvents Kafka binding's binary mode
// (ce_ headers, the spec as JSON the value), or the callback as Tencent sent it.
func (k *Kafka) record(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) (*kgo.Record, error) {
	var body []byte
	var err error
	headers := map[string]string{}
	if k.format == v1alpha1.HTTPFormatTencent {
		body, err = tencentBody(event)
	} else {
		body, err = cloudEventData(event)
		for name, value := range cloudEventAttributes(event) {
			headers["ce_"+name] = value
		}
	}
	if err != nil {
		return nil, fmt.Errorf("encoding the event: %w", err)
	}
	headers["content-type"] = "application/json"
	// For consumers that drop repeats: the event's id, or a dead letter's own (as HTTP's
	// Idempotency-Key), so that a dead letter is not taken for a repeat of its event.
	headers["idempotency-key"] = MessageID(ctx, event)
	for name, value := range extensionAttributes(ctx) {
		if k.format == v1alpha1.HTTPFormatTencent {
			headers[extensionHeader(name)] = value
		} else {
			headers["ce_"+name] = value
		}
	}
	record := &kgo.Record{Key: []byte(event.Spec.OfficialAccount), Value: body}
	for name, value := range headers {
		record.Headers = append(record.Headers, kgo.RecordHeader{Key: name, Value: []byte(value)})
	}
	return record, nil
}

// classifyKafkaError retries what time can mend (brokers down, leaders moving, timeouts, a
// topic being created, refused credentials or rights: nearly always a password or an ACL
// being rotated) and fails for good a record the broker refuses as such (too large,
// invalid).
func classifyKafkaError(err error, topic string) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge), errors.Is(err, kerr.InvalidRecord),
		errors.Is(err, kerr.CorruptMessage):
		return Permanent(fmt.Errorf("Kafka refused the record for topic %s: %w", topic, err))
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("Kafka: topic %s does not exist: %w", topic, err)
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("Kafka refused the credentials: %w", err)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed),
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return fmt.Errorf("Kafka refused the user the rights on topic %s or the cluster: %w", topic, err)
	}
	return fmt.Errorf("Kafka (topic %s): %w", topic, err)
}
