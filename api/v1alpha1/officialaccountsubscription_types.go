package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Action says whether members subscribed to or unsubscribed from an Official Account,
// (Snapshot) lists all its subscribers as a resync found them, or (AccountDestroyed) says
// the account was destroyed, which ends every subscription to it.
// +kubebuilder:validation:Enum=Subscribe;Unsubscribe;Snapshot;AccountDestroyed
type Action string

const (
	// ActionSubscribe comes from OfficialAccount.CallbackAfterAddSubscriber.
	ActionSubscribe Action = "Subscribe"
	// ActionUnsubscribe comes from OfficialAccount.CallbackAfterDeleteSubscriber.
	ActionUnsubscribe Action = "Unsubscribe"
	// ActionAccountDestroyed comes from OfficialAccount.CallbackAfterOfficialAccountDestroyed.
	// It names no subscribers: every member of the account is no longer subscribed.
	ActionAccountDestroyed Action = "AccountDestroyed"
)

// Labels and annotations the operator sets or reads. Tencent's IDs (like "@TOA#_x") are no
// valid label values, so labels carry a hash of them; the spec keeps the originals.
const (
	LabelSDKAppID            = "officialaccount.chat-operators.dev/sdk-app-id"
	LabelAction              = "officialaccount.chat-operators.dev/action"
	LabelOfficialAccountHash = "officialaccount.chat-operators.dev/official-account-hash"

	// AnnotationPart is "i/n" on an event split into n resources because it named more
	// subscribers than one resource holds.
	AnnotationPart = "officialaccount.chat-operators.dev/part"

	// AnnotationRetry: setting it to any new value sends failed deliveries round again.
	AnnotationRetry = "officialaccount.chat-operators.dev/retry"
)

// MaxSubscribersPerResource bounds one resource's subscriber list; a larger event is
// split into several resources so that none is dropped and each stays small in etcd.
const MaxSubscribersPerResource = 500

// OfficialAccountSubscriptionSpec is one webhook event as Tencent sent it.
// It is immutable: it records what happened. Each field carries its own `self == oldSelf`
// rule rather than one rule on the whole spec: the API server evaluates the rules on every
// status write too, and comparing the spec as one map cost about a sixth of the API
// server's CPU for each status write. An optional field also needs the presence rule
// below, since a field's own rule is not evaluated when the field is added or removed.
// +kubebuilder:validation:XValidation:rule="has(self.operatorAccount) == has(oldSelf.operatorAccount) && has(self.clientIP) == has(oldSelf.clientIP) && has(self.optPlatform) == has(oldSelf.optPlatform) && has(self.snapshot) == has(oldSelf.snapshot) && has(self.ownerAccount) == has(oldSelf.ownerAccount) && has(self.accountName) == has(oldSelf.accountName)",message="optional fields are immutable: the event is stored as Tencent sent it"
// +kubebuilder:validation:XValidation:rule="self.subscriberCount == size(self.subscribers)",message="subscriberCount must equal the number of subscribers"
// +kubebuilder:validation:XValidation:rule="self.action == 'Snapshot' || self.action == 'AccountDestroyed' || size(self.subscribers) >= 1",message="a callback names at least one subscriber"
// +kubebuilder:validation:XValidation:rule="self.action != 'AccountDestroyed' || size(self.subscribers) == 0",message="an AccountDestroyed event names no subscribers"
// +kubebuilder:validation:XValidation:rule="(self.action == 'Snapshot') == has(self.snapshot)",message="snapshot is set on Snapshot events and only on them"
type OfficialAccountSubscriptionSpec struct {
	// SDKAppID of the Chat app that sent the callback.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=20
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	SDKAppID string `json:"sdkAppID"`

	// CallbackCommand as Tencent named it, for example
	// OfficialAccount.CallbackAfterAddSubscriber.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	CallbackCommand string `json:"callbackCommand"`

	// Action is Subscribe, Unsubscribe, Snapshot or AccountDestroyed.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	Action Action `json:"action"`

	// OfficialAccount is the Official Account's user ID, unchanged (e.g. "@TOA#_news").
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=48
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	OfficialAccount string `json:"officialAccount"`

	// OperatorAccount is the UserID that made the change.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	OperatorAccount string `json:"operatorAccount,omitempty"`

	// OwnerAccount is the UserID that owned the account (AccountDestroyed only).
	// +kubebuilder:validation:MaxLength=32
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	OwnerAccount string `json:"ownerAccount,omitempty"`

	// AccountName is the account's display name, Tencent's Name (AccountDestroyed only).
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	AccountName string `json:"accountName,omitempty"`

	// Subscribers are the members' UserIDs, in the order received. A Snapshot's part may
	// name none (the account has no subscribers); an AccountDestroyed event names none.
	// +kubebuilder:validation:MaxItems=500
	// +kubebuilder:validation:items:MaxLength=32
	// +listType=atomic
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	Subscribers []string `json:"subscribers"`

	// SubscriberCount is len(subscribers), kept so that `kubectl get` can show it (printer
	// columns cannot count a list).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	SubscriberCount int32 `json:"subscriberCount"`

	// EventTime is Tencent's event timestamp in Unix milliseconds, unchanged.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	EventTime int64 `json:"eventTime"`

	// ClientIP as given in the callback's query.
	// +kubebuilder:validation:MaxLength=45
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	ClientIP string `json:"clientIP,omitempty"`

	// OptPlatform as given in the callback's query (RESTAPI, Web, Android, iOS, ...).
	// +kubebuilder:validation:MaxLength=32
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	OptPlatform string `json:"optPlatform,omitempty"`

	// ReceivedTime is when the webhook server first received the event.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	ReceivedTime metav1.Time `json:"receivedTime"`

	// Snapshot is set on the events a resync makes: which part of which snapshot this is.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="field is immutable: the event is stored as Tencent sent it"
	Snapshot *SnapshotPart `json:"snapshot,omitempty"`
}

// SnapshotPart places one resource in a snapshot: a snapshot of n subscribers is stored
// as ceil(n/500) resources (at least one), each naming its part.
type SnapshotPart struct {
	// ID is the same on every part of one snapshot.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	ID string `json:"id"`
	// Part is this resource's number, from 1.
	// +kubebuilder:validation:Minimum=1
	Part int32 `json:"part"`
	// Parts is how many resources the snapshot has.
	// +kubebuilder:validation:Minimum=1
	Parts int32 `json:"parts"`
	// Subscribers is how many subscribers the whole snapshot lists.
	// +kubebuilder:validation:Minimum=0
	Subscribers int32 `json:"subscribers"`
}

// DeliveryState of one event at one sink.
// +kubebuilder:validation:Enum=Pending;Delivered;Failed
type DeliveryState string

const (
	DeliveryPending   DeliveryState = "Pending"
	DeliveryDelivered DeliveryState = "Delivered"
	DeliveryFailed    DeliveryState = "Failed"
)

// Why a delivery failed (SinkDelivery.FailureReason).
const (
	FailureRejected         = "Rejected"
	FailureRetriesExhausted = "RetriesExhausted"
	FailureSinkNotFound     = "SinkNotFound"
)

// TargetSink is the SubscriptionSink the delivery goes to: its name, or, for a dead
// letter, the dead-letter sink, or, for a replay, the replay's sink.
func (d *SinkDelivery) TargetSink() string {
	switch {
	case d.DeadLetterSink != "":
		return d.DeadLetterSink
	case d.ReplaySink != "":
		return d.ReplaySink
	}
	return d.Name
}

// DeadLetterName is the name of the entry that dead-letters the delivery to that sink.
func DeadLetterName(sink string) string { return sink + "/deadletter" }

// SinkDelivery is the delivery of this event to one SubscriptionSink.
type SinkDelivery struct {
	// Name of the SubscriptionSink in the resource's namespace.
	Name string `json:"name"`

	// State is Pending until the sink accepted the event (Delivered) or the operator gave up
	// (Failed).
	State DeliveryState `json:"state"`

	// Attempts made in the current round (the retry annotation starts a new round).
	// +optional
	Attempts int32 `json:"attempts,omitempty"`

	// FirstAttemptTime starts the round's give-up window.
	// +optional
	FirstAttemptTime *metav1.Time `json:"firstAttemptTime,omitempty"`

	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`

	// NextAttemptTime is when a Pending delivery is tried again.
	// +optional
	NextAttemptTime *metav1.Time `json:"nextAttemptTime,omitempty"`

	// +optional
	DeliveredTime *metav1.Time `json:"deliveredTime,omitempty"`

	// LastError of the latest failed attempt.
	// +optional
	LastError string `json:"lastError,omitempty"`

	// SinkMissingSince is when the sink was first found missing. The delivery waits a grace
	// period for a sink of that name to come back (deleted and re-created by Helm or
	// Argo CD, say), then fails.
	// +optional
	SinkMissingSince *metav1.Time `json:"sinkMissingSince,omitempty"`

	// FailureReason says why a Failed delivery failed: Rejected (the sink refused the
	// event), RetriesExhausted (maxAttempts or giveUpAfter) or SinkNotFound.
	// +optional
	FailureReason string `json:"failureReason,omitempty"`

	// DeadLetterOf is set on a dead letter: the entry that delivers, to DeadLetterSink,
	// the event whose delivery to the sink it names failed. Its name is that sink's
	// followed by "/deadletter".
	// +optional
	DeadLetterOf string `json:"deadLetterOf,omitempty"`

	// DeadLetterSink is the SubscriptionSink a dead letter goes to.
	// +optional
	DeadLetterSink string `json:"deadLetterSink,omitempty"`

	// Replay is set on a replay's delivery: the SubscriptionReplay that selected the event.
	// Its name is "replay/" followed by the replay's. It does not change the event's Ready
	// condition, but holds the event from retention while it is pending.
	// +optional
	Replay string `json:"replay,omitempty"`

	// ReplaySink is the SubscriptionSink a replay's delivery goes to.
	// +optional
	ReplaySink string `json:"replaySink,omitempty"`

	// ReplayUID is the UID of the replay, so that a replay deleted and created again under
	// the same name sends its events again.
	// +optional
	ReplayUID string `json:"replayUID,omitempty"`

	// SuspendedSince is when the delivery found its sink suspended. The time from then
	// until the delivery starts again does not count towards the sink's giveUpAfter.
	// +optional
	SuspendedSince *metav1.Time `json:"suspendedSince,omitempty"`
}

// OfficialAccountSubscriptionStatus is the event's delivery.
type OfficialAccountSubscriptionStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (delivered to every sink), Reconciling (deliveries in progress),
	// Stalled (a delivery gave up).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Sinks are the SubscriptionSinks that matched the event when it was first reconciled
	// (every sink created before the event), and those the retry annotation added.
	// +listType=map
	// +listMapKey=name
	// +optional
	Sinks []SinkDelivery `json:"sinks,omitempty"`

	// CompletionTime is when the last delivery ended, delivered or failed; retention counts
	// from it.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// LastHandledRetry is the value of the retry annotation the operator acted on.
	// +optional
	LastHandledRetry string `json:"lastHandledRetry,omitempty"`
}

// OfficialAccountSubscription is one webhook event from Tencent Cloud Chat: members
// subscribed to or unsubscribed from an Official Account. The operator stores it before
// it answers Tencent, then delivers it to every matching SubscriptionSink.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=oasub,categories=officialaccount
// +kubebuilder:printcolumn:name="Official Account",type=string,JSONPath=`.spec.officialAccount`
// +kubebuilder:printcolumn:name="Action",type=string,JSONPath=`.spec.action`
// +kubebuilder:printcolumn:name="Subscribers",type=integer,JSONPath=`.spec.subscriberCount`,description="How many members the event names"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:selectablefield:JSONPath=`.spec.officialAccount`
// +kubebuilder:selectablefield:JSONPath=`.spec.action`
// +kubebuilder:selectablefield:JSONPath=`.spec.sdkAppID`
// +kubebuilder:selectablefield:JSONPath=`.spec.callbackCommand`
type OfficialAccountSubscription struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   OfficialAccountSubscriptionSpec   `json:"spec"`
	Status OfficialAccountSubscriptionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// OfficialAccountSubscriptionList is a list of OfficialAccountSubscriptions.
type OfficialAccountSubscriptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OfficialAccountSubscription `json:"items"`
}

func init() {
	SchemeBuilder.Register(&OfficialAccountSubscription{}, &OfficialAccountSubscriptionList{})
}
