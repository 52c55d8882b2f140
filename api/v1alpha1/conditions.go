package v1alpha1

// Condition types, following kstatus: Ready is always set; Reconciling and Stalled only
// while abnormal.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
)

// Condition reasons.
const (
	ReasonDelivered       = "Delivered"
	ReasonDelivering      = "Delivering"
	ReasonRetrying        = "Retrying"
	ReasonDeliveryFailed  = "DeliveryFailed"
	ReasonNoMatchingSinks = "NoMatchingSinks"
	ReasonSinkNotFound    = "SinkNotFound"

	ReasonValid            = "Valid"
	ReasonSecretNotFound   = "SecretNotFound"
	ReasonSecretNotAllowed = "SecretNotAllowed"
	ReasonInvalidSecret    = "InvalidSecret"
	ReasonInvalidConfig    = "InvalidConfiguration"
	ReasonCheckFailed      = "CheckFailed"
	ReasonDeliveryErrors   = "DeliveryErrors"
	ReasonCircuitOpen      = "CircuitOpen"
	ReasonDeadLettered     = "DeadLettered"

	ReasonDeadLetterSinkNotFound = "DeadLetterSinkNotFound"

	// Reasons of a SubscriptionReplay's conditions, and of an event's Reconciling condition
	// while a replay's delivery of it is pending.
	ReasonComplete      = "Complete"
	ReasonDryRun        = "DryRun"
	ReasonTooManyEvents = "TooManyEvents"
	ReasonReplaying     = "Replaying"
	ReasonSelecting     = "Selecting"

	// Event reasons of a sink's circuit breaker.
	ReasonCircuitOpened = "CircuitOpened"
	ReasonCircuitClosed = "CircuitClosed"
)
