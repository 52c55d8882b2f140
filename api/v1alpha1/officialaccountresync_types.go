package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnnotationResyncNow: setting it to any new value on an OfficialAccountResync resyncs
// every account at once, whatever the interval.
const AnnotationResyncNow = "officialaccount.chat-operators.dev/resync"

// ActionSnapshot is an event a resync made: the account's subscribers as Tencent's REST
// API listed them at the event's time.
const ActionSnapshot Action = "Snapshot"

// CommandSnapshot is the callbackCommand of the events a resync makes; Tencent sends no
// such callback.
const CommandSnapshot = "OfficialAccountResync.Snapshot"

// Conditions and reasons of an OfficialAccountResync.
const (
	ReasonResynced       = "Resynced"
	ReasonResyncing      = "Resyncing"
	ReasonResyncFailed   = "ResyncFailed"
	ReasonTencentRefused = "TencentRefused"
	ReasonSuspended      = "Suspended"
	// ReasonEndpointNotAllowed: spec.endpoint is neither Tencent's REST domain over https
	// nor in --tencent-rest-endpoints; no call is made, since every call carries the
	// app's admin UserSig.
	ReasonEndpointNotAllowed = "EndpointNotAllowed"
	// ReasonAccountDestroyed: Tencent answered 130004 for an account whose
	// AccountDestroyed callback was stored.
	ReasonAccountDestroyed = "AccountDestroyed"
)

// AccountResyncState is how an account's last resync ended.
// +kubebuilder:validation:Enum=Resynced;Failed;Destroyed
type AccountResyncState string

const (
	AccountResynced  AccountResyncState = "Resynced"
	AccountFailed    AccountResyncState = "Failed"
	AccountDestroyed AccountResyncState = "Destroyed"
)

// OfficialAccountResyncSpec names the Official Accounts to resync and how to call
// Tencent's REST API.
// +kubebuilder:validation:XValidation:rule="has(self.region) != has(self.endpoint)",message="set exactly one of region and endpoint"
type OfficialAccountResyncSpec struct {
	// SDKAppID of the Chat app.
	// +kubebuilder:validation:Pattern=`^[0-9]{1,20}$`
	SDKAppID string `json:"sdkAppID"`

	// Region picks Tencent's REST domain: china (console.tim.qq.com), singapore, seoul,
	// frankfurt, silicon-valley, jakarta or tokyo.
	// +kubebuilder:validation:Enum=china;singapore;seoul;frankfurt;silicon-valley;jakarta;tokyo
	// +optional
	Region string `json:"region,omitempty"`

	// Endpoint is the REST API's base URL instead of a region's, e.g. a backup domain
	// (https://adminapisgp.my-imcloud.com). Every call carries the app's admin UserSig, so
	// the operator calls only https URLs of Tencent's REST domains (*.tim.qq.com,
	// *.im.qcloud.com, *.my-imcloud.com) and those its --tencent-rest-endpoints flag lists
	// (a local stand-in: http://127.0.0.1:8092 for `go run ./hack/fake-tencent-rest`);
	// another is Stalled with reason EndpointNotAllowed, without a call.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="endpoint must be an absolute http:// or https:// URL"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || url(self).getScheme() == 'https' || url(self).getHostname() in ['127.0.0.1', 'localhost', '::1']",message="endpoint must be https: every call carries the app's admin UserSig (plain http only to a stand-in on the loopback address)"
	// +kubebuilder:validation:XValidation:rule="!isURL(self) || (url(self).getQuery().size() == 0 && !self.contains('@') && !self.contains('#'))",message="endpoint must carry no user, query or fragment"
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// AdminIdentifierSecretRef names the key of a Secret (labelled
	// officialaccount.chat-operators.dev/sink-credentials=true) holding the app's admin
	// account, which every REST call is made as.
	AdminIdentifierSecretRef corev1.SecretKeySelector `json:"adminIdentifierSecretRef"`

	// SecretKeySecretRef names the key of such a Secret holding the app's secret key
	// (Chat console: Basic Configuration), which UserSigs are made from.
	SecretKeySecretRef corev1.SecretKeySelector `json:"secretKeySecretRef"`

	// OfficialAccounts are the Official Accounts' user IDs (e.g. "@TOA#_news"): Tencent has
	// no call that lists an app's accounts.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=48
	// +listType=set
	OfficialAccounts []string `json:"officialAccounts"`

	// Interval between two resyncs of each account.
	// +kubebuilder:default="6h"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// Suspend stops resyncing; a resync under way finishes.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// AccountResync is the last resync of one Official Account. Each account keeps its own
// schedule: one that fails is retried on its own backoff, the others at their interval.
type AccountResync struct {
	// OfficialAccount is the account's user ID.
	OfficialAccount string `json:"officialAccount"`

	// State of the last resync: Resynced, Failed, or Destroyed (Tencent no longer knows
	// the account, and its AccountDestroyed callback was stored).
	// +optional
	State AccountResyncState `json:"state,omitempty"`

	// NextResyncTime is when the account is resynced next: an interval after its last
	// resync ended, or its backoff after a failure.
	// +optional
	NextResyncTime *metav1.Time `json:"nextResyncTime,omitempty"`

	// Failures in a row, which the backoff grows with; 0 after a success.
	// +optional
	Failures int32 `json:"failures,omitempty"`

	// InProgress is the snapshot being stored, recorded before its first part: a resync
	// that stops before the last part (a crash, an API error) is retried with the same
	// time and id, so that the snapshot completes rather than being left in part.
	// +optional
	InProgress *SnapshotInProgress `json:"inProgress,omitempty"`

	// LastResyncTime is when the last complete listing began: the snapshot's time.
	// +optional
	LastResyncTime *metav1.Time `json:"lastResyncTime,omitempty"`

	// Subscribers is how many subscribers it listed.
	// +optional
	Subscribers int32 `json:"subscribers"`

	// Snapshot names the snapshot made of it (the id of its events' spec.snapshot).
	// +optional
	Snapshot string `json:"snapshot,omitempty"`

	// Changed says the subscribers differ from the resync before (by a hash of the sorted
	// list); which ones differ is for the sinks to find, which hold the app's copy.
	// +optional
	Changed bool `json:"changed,omitempty"`

	// ContentHash is that hash.
	// +optional
	ContentHash string `json:"contentHash,omitempty"`

	// Calls is how many REST calls the last resync made, retries included.
	// +optional
	Calls int32 `json:"calls,omitempty"`

	// LastError of the last resync that failed, cleared by one that succeeds.
	// +optional
	LastError string `json:"lastError,omitempty"`

	// LastErrorTime is when it failed.
	// +optional
	LastErrorTime *metav1.Time `json:"lastErrorTime,omitempty"`
}

// SnapshotInProgress is a snapshot whose parts are not all stored yet.
type SnapshotInProgress struct {
	// Snapshot is the id of its events' spec.snapshot.
	Snapshot string `json:"snapshot"`
	// EventTime is the snapshot's time T in Unix milliseconds, its events' eventTime.
	EventTime int64 `json:"eventTime"`
	// Parts it is stored in.
	// +kubebuilder:validation:Minimum=1
	Parts int32 `json:"parts"`
}

// OfficialAccountResyncStatus is what the operator last did.
type OfficialAccountResyncStatus struct {
	// ObservedGeneration is the generation the status is about.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Accounts is each account's last resync, in the spec's order.
	// +optional
	// +listType=map
	// +listMapKey=officialAccount
	Accounts []AccountResync `json:"accounts,omitempty"`

	// ResyncedAccounts, FailingAccounts and DestroyedAccounts count the accounts by the
	// state of their last resync.
	// +kubebuilder:default=0
	// +optional
	ResyncedAccounts int32 `json:"resyncedAccounts"`
	// +kubebuilder:default=0
	// +optional
	FailingAccounts int32 `json:"failingAccounts"`
	// +kubebuilder:default=0
	// +optional
	DestroyedAccounts int32 `json:"destroyedAccounts"`

	// SecretsVersion is the resourceVersions of the Secrets as the last resync read them:
	// a resync stalled on its credentials is tried again as soon as they change.
	// +optional
	SecretsVersion string `json:"secretsVersion,omitempty"`

	// LastResyncTime is the oldest of the accounts' last resyncs (destroyed ones aside):
	// every account was resynced at least as recently.
	// +optional
	LastResyncTime *metav1.Time `json:"lastResyncTime,omitempty"`

	// NextResyncTime is when the next account is due.
	// +optional
	NextResyncTime *metav1.Time `json:"nextResyncTime,omitempty"`

	// LastHandledResync is the value of the resync annotation the operator acted on.
	// +optional
	LastHandledResync string `json:"lastHandledResync,omitempty"`

	// Conditions: Ready (every account resynced or destroyed; its message names those
	// failing), Reconciling (a resync under way), Stalled (the configuration or the
	// credentials are wrong, or Tencent refused the service: retrying cannot help).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// OfficialAccountResync resyncs Official Accounts' subscribers from Tencent's REST API:
// every interval it lists each account's subscribers and stores them as Snapshot events,
// which sinks apply like callbacks, so that a callback Tencent never delivered is still
// reflected downstream.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=oaresync,categories=officialaccount
// +kubebuilder:printcolumn:name="Resynced",type=integer,JSONPath=`.status.resyncedAccounts`,description="Accounts whose last resync succeeded"
// +kubebuilder:printcolumn:name="Failing",type=integer,JSONPath=`.status.failingAccounts`,description="Accounts whose last resync failed (see status.accounts)"
// +kubebuilder:printcolumn:name="Destroyed",type=integer,JSONPath=`.status.destroyedAccounts`,priority=1,description="Accounts Tencent destroyed"
// +kubebuilder:printcolumn:name="Last Resync",type=date,JSONPath=`.status.lastResyncTime`
// +kubebuilder:printcolumn:name="Next Resync",type=string,JSONPath=`.status.nextResyncTime`,description="When the next resync is due (a time ahead, so not shown as an age)"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type OfficialAccountResync struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   OfficialAccountResyncSpec   `json:"spec"`
	Status OfficialAccountResyncStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// OfficialAccountResyncList is a list of OfficialAccountResyncs.
type OfficialAccountResyncList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OfficialAccountResync `json:"items"`
}

func init() {
	SchemeBuilder.Register(&OfficialAccountResync{}, &OfficialAccountResyncList{})
}
