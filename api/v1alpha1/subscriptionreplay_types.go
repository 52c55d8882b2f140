package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LabelReplayPrefix starts the label that marks an event a SubscriptionReplay selected:
// "replay.officialaccount.chat-operators.dev/<replay name>", its value the replay's UID.
// The label is the frozen selection: it outlives operator restarts, lets the event's
// reconciler add the replay's delivery, and lets `kubectl get oasub -l` list the events.
const LabelReplayPrefix = "replay.officialaccount.chat-operators.dev/"

// ReplayLabel is the label that marks the events the replay of that name selected.
func ReplayLabel(replay string) string { return LabelReplayPrefix + replay }

// ReplayDeliveryName is the name of the event's delivery entry for the replay of that name.
func ReplayDeliveryName(replay string) string { return "replay/" + replay }

// ReplayState is what a replay's filter selects: the event's delivery to the replay's
// sink, or the event's own state where it has no delivery to that sink.
// +kubebuilder:validation:Enum=Delivered;Failed;NoMatchingSinks
type ReplayState string

const (
	ReplayDelivered       ReplayState = "Delivered"
	ReplayFailed          ReplayState = "Failed"
	ReplayNoMatchingSinks ReplayState = "NoMatchingSinks"
)

// DefaultReplayMaxEvents bounds what one replay may send unless it says otherwise.
const DefaultReplayMaxEvents = 10000

// SubscriptionReplaySpec says which stored events go again, and where.
type SubscriptionReplaySpec struct {
	// SinkName is the SubscriptionSink, in this namespace, the events go to. It may be one
	// the events were never matched to: that is a backfill.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SinkName string `json:"sinkName"`

	// States selects by the event's delivery to SinkName, or by the event's own state
	// where it has no delivery to that sink. Events still being delivered are never
	// selected.
	// +kubebuilder:default={Failed}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=3
	// +listType=set
	// +optional
	States []ReplayState `json:"states,omitempty"`

	// OfficialAccounts selects events of these Official Accounts; empty means all.
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=48
	// +listType=set
	// +optional
	OfficialAccounts []string `json:"officialAccounts,omitempty"`

	// Actions selects events of these actions; empty means all.
	// +kubebuilder:validation:MaxItems=4
	// +listType=set
	// +optional
	Actions []Action `json:"actions,omitempty"`

	// SDKAppIDs selects events of these apps; empty means all.
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=20
	// +listType=set
	// +optional
	SDKAppIDs []string `json:"sdkAppIDs,omitempty"`

	// EventTimeAfter selects events whose Tencent event time is at or after it.
	// +optional
	EventTimeAfter *metav1.Time `json:"eventTimeAfter,omitempty"`

	// EventTimeBefore selects events whose Tencent event time is before it.
	// +optional
	EventTimeBefore *metav1.Time `json:"eventTimeBefore,omitempty"`

	// DryRun only counts: the status reports how many events the filter matches, and
	// nothing is sent. Set it to false to run the replay.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

	// MaxEvents is the most events the replay may send: a filter that matches more sends
	// nothing and the replay is Stalled with reason TooManyEvents.
	// +kubebuilder:default=10000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxEvents *int32 `json:"maxEvents,omitempty"`
}

// SubscriptionReplayStatus is what the replay selected and how far it got.
type SubscriptionReplayStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (True, reason Complete, once every selected event was delivered or
	// failed; reason DryRun for a preview), Reconciling while it runs, Stalled (reason
	// SinkNotFound or TooManyEvents).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Matched is how many stored events the filter matches (a dry run), or selected (a run).
	// +optional
	Matched int32 `json:"matched"`
	// Pending are the selected events not yet delivered to the sink, nor failed.
	// +optional
	Pending int32 `json:"pending"`
	// Delivered are the selected events the sink accepted.
	// +optional
	Delivered int32 `json:"delivered"`
	// Failed are the selected events whose delivery failed, or that were deleted before it.
	// +optional
	Failed int32 `json:"failed"`

	// StartTime is when the selection was frozen: the events selected are marked with the
	// label replay.officialaccount.chat-operators.dev/<name>.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CompletionTime is when the last selected event was delivered or failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// Started reports whether the replay's selection is frozen.
func (r *SubscriptionReplay) Started() bool { return r.Status.StartTime != nil }

// MaxEventsOrDefault is the replay's maxEvents, or its default.
func (r *SubscriptionReplay) MaxEventsOrDefault() int {
	if r.Spec.MaxEvents == nil {
		return DefaultReplayMaxEvents
	}
	return int(*r.Spec.MaxEvents)
}

// SubscriptionReplay sends stored events that a filter selects once more to one sink: the
// delivered ones a receiver lost, the failed ones after an outage, or every stored event to
// a new sink (a backfill). With dryRun it only counts them.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=oareplay,categories=officialaccount
// +kubebuilder:printcolumn:name="Sink",type=string,JSONPath=`.spec.sinkName`
// +kubebuilder:printcolumn:name="Dry Run",type=boolean,JSONPath=`.spec.dryRun`,priority=1
// +kubebuilder:printcolumn:name="Matched",type=integer,JSONPath=`.status.matched`
// +kubebuilder:printcolumn:name="Delivered",type=integer,JSONPath=`.status.delivered`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failed`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="a replay's name is at most 63 characters: it names a label key"
// +kubebuilder:validation:XValidation:rule="self.metadata.name != 'deadletter'",message="a replay may not be named deadletter: its deliveries would share their name with a sink's dead letters"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.status) || !has(oldSelf.status.startTime) || self.spec == oldSelf.spec",message="the spec of a replay that has started cannot change: its selection is frozen; create another replay"
type SubscriptionReplay struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SubscriptionReplaySpec   `json:"spec"`
	Status SubscriptionReplayStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// SubscriptionReplayList is a list of SubscriptionReplays.
type SubscriptionReplayList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SubscriptionReplay `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SubscriptionReplay{}, &SubscriptionReplayList{})
}
