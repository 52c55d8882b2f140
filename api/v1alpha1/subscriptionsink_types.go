package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LabelSinkCredentials marks the Secrets a SubscriptionSink may name for its credentials:
// the operator reads and caches only Secrets with it set to "true", so that whoever may
// create a sink cannot make the operator read, and send away, any Secret of the namespace.
const LabelSinkCredentials = "officialaccount.chat-operators.dev/sink-credentials"

// SubscriptionSinkSpec says which events go where, and how hard to try.
// +kubebuilder:validation:XValidation:rule="[has(self.http), has(self.postgres), has(self.mysql), has(self.nats), has(self.kafka), has(self.redis)].filter(d, d).size() == 1",message="set exactly one destination: http, postgres, mysql, nats, kafka or redis"
type SubscriptionSinkSpec struct {
	// SDKAppIDs limits the sink to events from these apps; empty means all.
	// +listType=set
	// +optional
	SDKAppIDs []string `json:"sdkAppIDs,omitempty"`

	// OfficialAccounts limits the sink to events of these Official Account IDs; empty
	// means all.
	// +listType=set
	// +optional
	OfficialAccounts []string `json:"officialAccounts,omitempty"`

	// Actions limits the sink to these actions (Subscribe, Unsubscribe, Snapshot,
	// AccountDestroyed); empty means every action.
	// +listType=set
	// +optional
	Actions []Action `json:"actions,omitempty"`

	// HTTP delivers each event with a POST.
	// +optional
	HTTP *HTTPDestination `json:"http,omitempty"`

	// Postgres keeps a table of who follows which Official Account in step with the
	// events.
	// +optional
	Postgres *PostgresDestination `json:"postgres,omitempty"`

	// MySQL keeps a table of who follows which Official Account in step with the events,
	// as Postgres does (TencentDB for MySQL, TDSQL-C for MySQL, any MySQL 8 or MariaDB).
	// +optional
	MySQL *MySQLDestination `json:"mysql,omitempty"`

	// NATS publishes each event to a NATS subject, by default through JetStream.
	// +optional
	NATS *NATSDestination `json:"nats,omitempty"`

	// Kafka produces each event to a Kafka topic (Tencent Cloud CKafka, or any Kafka).
	// +optional
	Kafka *KafkaDestination `json:"kafka,omitempty"`

	// Redis keeps each account's set of subscribers in step with the events (TencentDB for
	// Redis, or any Redis).
	// +optional
	Redis *RedisDestination `json:"redis,omitempty"`

	// Retry says how failed deliveries are retried: InitialInterval after the first failed
	// attempt ends, doubling up to MaxInterval.
	// +optional
	Retry RetryPolicy `json:"retry,omitempty"`

	// Suspend pauses deliveries to this sink; they resume, none lost, when it is unset.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// MaxInFlight is how many deliveries to this sink may run at once. A sink that hangs
	// holds at most this many; deliveries to other sinks never wait for it.
	// +kubebuilder:default=8
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	// +optional
	MaxInFlight *int32 `json:"maxInFlight,omitempty"`

	// CircuitBreaker stops deliveries to a sink that keeps failing, so that an outage
	// costs a probe now and then instead of an attempt and a status write per pending
	// event. It is on by default.
	// +optional
	CircuitBreaker CircuitBreaker `json:"circuitBreaker,omitempty"`

	// RateLimit caps how many deliveries to this sink start per second, also while a
	// backlog drains after an outage. Default: no limit.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// DeadLetterSinkRef names another SubscriptionSink of this namespace that receives,
	// once, each event whose delivery to this sink failed, with what went wrong. One hop
	// only: the dead-letter sink's own failures are not dead-lettered again.
	// +optional
	DeadLetterSinkRef *SinkReference `json:"deadLetterSinkRef,omitempty"`
}

// SinkReference names a SubscriptionSink of the same namespace.
type SinkReference struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// CircuitBreaker opens a sink's circuit after ConsecutiveFailures attempts in a row failed
// for the sink's reasons (connection errors, timeouts, refused credentials, 408, 425, 429,
// 5xx; not an event's rejection), with no success between. While it is open, one pending
// delivery is attempted every ProbeInterval, the interval doubling after each failed probe
// up to MaxProbeInterval, and no other delivery to the sink is attempted; a probe that the
// sink answers closes it.
type CircuitBreaker struct {
	// ConsecutiveFailures that open the circuit; 0 turns the breaker off. Default 5.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +optional
	ConsecutiveFailures *int32 `json:"consecutiveFailures,omitempty"`

	// ProbeInterval is the wait before the first probe of an open circuit. Default 30s.
	// +kubebuilder:default="30s"
	// +optional
	ProbeInterval *metav1.Duration `json:"probeInterval,omitempty"`

	// MaxProbeInterval caps the doubling wait between probes. Default 5m.
	// +kubebuilder:default="5m"
	// +optional
	MaxProbeInterval *metav1.Duration `json:"maxProbeInterval,omitempty"`
}

// RateLimit is a token bucket: PerSecond deliveries start per second on average, Burst at
// once at most.
type RateLimit struct {
	// PerSecond is how many deliveries may start per second.
	// +kubebuilder:validation:Minimum=1
	PerSecond int32 `json:"perSecond"`

	// Burst is how many may start at once; default PerSecond.
	// +kubebuilder:validation:Minimum=1
	// +optional
	Burst *int32 `json:"burst,omitempty"`
}

// HTTPFormat is how an event is encoded in the request.
// +kubebuilder:validation:Enum=CloudEvents;Tencent
type HTTPFormat string

const (
	// HTTPFormatCloudEvents sends a CloudEvents 1.0 event in binary content mode.
	HTTPFormatCloudEvents HTTPFormat = "CloudEvents"
	// HTTPFormatTencent sends the callback body as Tencent sent it.
	HTTPFormatTencent HTTPFormat = "Tencent"
)

// HTTPDestination is an HTTP(S) endpoint that receives each event as a POST.
type HTTPDestination struct {
	// URL to POST to.
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))",message="url must be an absolute http:// or https:// URL"
	URL string `json:"url"`

	// Format of the request body.
	// +kubebuilder:default=CloudEvents
	// +optional
	Format HTTPFormat `json:"format,omitempty"`

	// SigningSecretRef names a key of a Secret in the sink's namespace that holds a
	// Standard Webhooks secret ("whsec_" followed by base64). When set, each request carries
	// webhook-id, webhook-timestamp and webhook-signature headers.
	// +optional
	SigningSecretRef *corev1.SecretKeySelector `json:"signingSecretRef,omitempty"`

	// Headers added to each request.
	// +optional
	Headers map[string]string `json:"headers,omitempty"`

	// Timeout of one request.
	// +kubebuilder:default="10s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// CABundle is PEM-encoded certificates to trust for an https URL, instead of the
	// system's.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`
}

// PostgresDestination is a PostgreSQL table with one row per (SDKAppID, Official Account,
// subscriber): whether the member follows the account now, as of which event.
type PostgresDestination struct {
	// DSNSecretRef names a key of a Secret in the sink's namespace holding a libpq
	// connection string ("postgres://user:password@host:5432/db?sslmode=require").
	DSNSecretRef corev1.SecretKeySelector `json:"dsnSecretRef"`

	// Table to keep, optionally schema-qualified.
	// +kubebuilder:default=officialaccount_subscribers
	// +kubebuilder:validation:Pattern=`^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$`
	// +optional
	Table string `json:"table,omitempty"`

	// CreateTable creates the table if it does not exist.
	// +kubebuilder:default=true
	// +optional
	CreateTable *bool `json:"createTable,omitempty"`

	// Timeout of one delivery or check, from waiting for a connection of the pool to the
	// statement's end; it is also the connect timeout and the statement_timeout, unless
	// the connection string sets those. Default 10s.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// MySQLDestination is a MySQL table with one row per (SDKAppID, Official Account,
// subscriber), kept as PostgresDestination's is: whether the member follows the account
// now, as of which event. Beside it the sink keeps <table>_accounts,
// <table>_snapshot_parts and <table>_snapshot_subscribers.
type MySQLDestination struct {
	// DSNSecretRef names a key of a Secret in the sink's namespace, labelled for sinks,
	// holding a go-sql-driver/mysql DSN ("user:password@tcp(mysql.example:3306)/db?tls=true").
	DSNSecretRef corev1.SecretKeySelector `json:"dsnSecretRef"`

	// Table to keep, optionally qualified by its database. At most 43 characters, so that
	// the tables beside it stay within MySQL's 64.
	// +kubebuilder:default=officialaccount_subscribers
	// +kubebuilder:validation:Pattern=`^([a-z_][a-z0-9_]{0,63}\.)?[a-z_][a-z0-9_]{0,42}$`
	// +optional
	Table string `json:"table,omitempty"`

	// CreateTable creates the tables if they do not exist.
	// +kubebuilder:default=true
	// +optional
	CreateTable *bool `json:"createTable,omitempty"`

	// Timeout of one delivery or check, from waiting for a connection of the pool to the
	// commit; it is also the connect, read and write timeout, unless the DSN sets those.
	// +kubebuilder:default="10s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// NATSDestination publishes each event as a CloudEvent (structured JSON) with the header
// Nats-Msg-Id set to the event id, so JetStream's duplicate window drops redeliveries.
type NATSDestination struct {
	// URL of the NATS server(s), comma-separated: nats://nats.default.svc:4222.
	// +kubebuilder:validation:MinLength=1
	URL string `json:"url"`

	// CredentialsSecretRef names a Secret in the sink's namespace with either the keys
	// "user" and "password", or "token", or "creds" (the contents of a .creds file).
	// +optional
	CredentialsSecretRef *corev1.LocalObjectReference `json:"credentialsSecretRef,omitempty"`

	// Subject to publish to. {action} (the action in lower case: subscribe, unsubscribe,
	// snapshot or accountdestroyed), {sdkAppID} and
	// {officialAccountHash} are replaced by the event's values.
	// +kubebuilder:default="officialaccount.{action}"
	// +optional
	Subject string `json:"subject,omitempty"`

	// JetStream waits for the stream's acknowledgement of each message. Without it,
	// delivery ends when the server has the message (core NATS: no persistence).
	// +kubebuilder:default=true
	// +optional
	JetStream *bool `json:"jetStream,omitempty"`

	// CreateStream creates a stream for the subject when none is bound to it; by default
	// such a delivery fails instead, so that no stream appears unasked.
	// +optional
	CreateStream bool `json:"createStream,omitempty"`
}

// KafkaDestination produces each event as one record to a Kafka topic (Tencent Cloud's
// CKafka, or any Kafka), keyed by the Official Account ID, with an idempotent producer and
// acks=all: a delivery is done when the brokers acknowledged it.
type KafkaDestination struct {
	// Brokers to bootstrap from, host:port.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=261
	// +kubebuilder:validation:items:Pattern=`^[^,/\s]+:[0-9]{1,5}$`
	// +listType=atomic
	Brokers []string `json:"brokers"`

	// Topic to produce to. It must exist: the sink creates none.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="topic may not be . or .."
	Topic string `json:"topic"`

	// Format of the record: CloudEvents (the CloudEvents Kafka binding's binary mode: ce_
	// headers, the event's spec as JSON the value) or Tencent (the callback body as Tencent
	// sent it).
	// +kubebuilder:default=CloudEvents
	// +optional
	Format HTTPFormat `json:"format,omitempty"`

	// TLS connects with TLS.
	// +optional
	TLS *KafkaTLS `json:"tls,omitempty"`

	// SASL logs in with a username and password. Without tls, a PLAIN password crosses
	// the network in the clear: set both.
	// +optional
	SASL *KafkaSASL `json:"sasl,omitempty"`

	// Timeout of one delivery or check: connecting, and the brokers' acknowledgement. At
	// least 1s, the least record timeout the producer takes.
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="timeout is at least 1s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// KafkaTLS is how a Kafka sink connects with TLS.
type KafkaTLS struct {
	// CABundle is PEM-encoded certificates to trust instead of the system's.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`
}

// KafkaSASL is how a Kafka sink logs in.
type KafkaSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	// +kubebuilder:validation:Enum=PLAIN;SCRAM-SHA-256;SCRAM-SHA-512
	Mechanism string `json:"mechanism"`

	// CredentialsSecretRef names a Secret in the sink's namespace, labelled for sinks, with
	// the keys "username" and "password".
	CredentialsSecretRef corev1.LocalObjectReference `json:"credentialsSecretRef"`
}

// RedisDestination keeps, per (SDKAppID, Official Account), the set of its current
// subscribers "{keyPrefix}:{sdkAppID}:{account}:subscribers" in step with the events, the
// newest event time winning.
type RedisDestination struct {
	// URLSecretRef names a key of a Secret in the sink's namespace, labelled for sinks,
	// holding a redis:// or rediss:// URL ("rediss://:password@redis.example:6379/0").
	URLSecretRef corev1.SecretKeySelector `json:"urlSecretRef"`

	// KeyPrefix starts every key the sink writes.
	// +kubebuilder:default=oasub
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[^\s{}]+$`
	// +optional
	KeyPrefix string `json:"keyPrefix,omitempty"`

	// Timeout of one delivery or check: dialling, each read and write, and the wait for a
	// pooled connection. Default 10s.
	// +kubebuilder:default="10s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// RetryPolicy is exponential backoff: InitialInterval doubling up to MaxInterval, each
// wait counted from the end of the failed attempt, until GiveUpAfter has passed since the
// first attempt or MaxAttempts were made.
type RetryPolicy struct {
	// +kubebuilder:default="1s"
	// +optional
	InitialInterval *metav1.Duration `json:"initialInterval,omitempty"`

	// +kubebuilder:default="5m"
	// +optional
	MaxInterval *metav1.Duration `json:"maxInterval,omitempty"`

	// +kubebuilder:default="24h"
	// +optional
	GiveUpAfter *metav1.Duration `json:"giveUpAfter,omitempty"`

	// MaxAttempts, when set, gives up after that many attempts even within GiveUpAfter.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxAttempts *int32 `json:"maxAttempts,omitempty"`
}

// SubscriptionSinkStatus says whether the sink can be delivered to, and how its
// deliveries are doing. The counts are computed from the operator's cache and written at
// most every few seconds, not per event.
type SubscriptionSinkStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready says whether the configuration is valid, its Secrets exist and the
	// destination answers; Stalled is set while failed deliveries wait for someone.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Pending is how many events wait to be delivered to this sink, retrying ones included.
	// +kubebuilder:default=0
	// +optional
	Pending int32 `json:"pending"`

	// Retrying is how many of the pending events had at least one failed attempt.
	// +kubebuilder:default=0
	// +optional
	Retrying int32 `json:"retrying"`

	// Failed is how many stored events gave up on this sink, and were not dead-lettered.
	// +kubebuilder:default=0
	// +optional
	Failed int32 `json:"failed"`

	// DeadLettered is how many stored events gave up on this sink and were delivered to
	// its dead-letter sink.
	// +optional
	DeadLettered int32 `json:"deadLettered,omitempty"`

	// OldestPendingTime is when the oldest pending event was received.
	// +optional
	OldestPendingTime *metav1.Time `json:"oldestPendingTime,omitempty"`

	// LastDeliveryTime is the last time an event was delivered to this sink.
	// +optional
	LastDeliveryTime *metav1.Time `json:"lastDeliveryTime,omitempty"`

	// LastError is the error of the last failed attempt, at LastErrorTime.
	// +optional
	LastError string `json:"lastError,omitempty"`

	// +optional
	LastErrorTime *metav1.Time `json:"lastErrorTime,omitempty"`

	// Circuit is the state of the sink's circuit breaker, while this replica leads.
	// +optional
	Circuit *CircuitStatus `json:"circuit,omitempty"`
}

// CircuitState is Closed (deliveries flow) or Open (only probes are attempted).
// +kubebuilder:validation:Enum=Closed;Open
type CircuitState string

const (
	CircuitClosed CircuitState = "Closed"
	CircuitOpen   CircuitState = "Open"
)

// CircuitStatus is a sink's circuit breaker as the leader has it.
type CircuitStatus struct {
	State CircuitState `json:"state"`

	// OpenedTime is when the circuit last opened.
	// +optional
	OpenedTime *metav1.Time `json:"openedTime,omitempty"`

	// NextProbeTime is when an open circuit's next probe is due.
	// +optional
	NextProbeTime *metav1.Time `json:"nextProbeTime,omitempty"`

	// Trips is how many times the circuit opened since this replica began to lead.
	// +optional
	Trips int32 `json:"trips,omitempty"`
}

// SubscriptionSink is a downstream system that receives the
// OfficialAccountSubscriptions of its namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=oasink,categories=officialaccount
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.pending`,description="Events waiting to be delivered to this sink"
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failed`,description="Stored events that gave up on this sink"
// +kubebuilder:printcolumn:name="Last Delivery",type=date,JSONPath=`.status.lastDeliveryTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Circuit",type=string,JSONPath=`.status.circuit.state`,priority=1
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.http.url`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="!has(self.spec.deadLetterSinkRef) || self.spec.deadLetterSinkRef.name != self.metadata.name",message="a sink cannot be its own dead-letter sink"
type SubscriptionSink struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SubscriptionSinkSpec   `json:"spec"`
	Status SubscriptionSinkStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// SubscriptionSinkList is a list of SubscriptionSinks.
type SubscriptionSinkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SubscriptionSink `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SubscriptionSink{}, &SubscriptionSinkList{})
}
