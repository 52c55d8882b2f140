package controllers

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
)

// applySinkStatus writes the backlog, the last delivery and error, the circuit and the
// conditions into the sink's status. ready is the configuration's and the destination
// check's verdict.
func applySinkStatus(sink *v1alpha1.SubscriptionSink, b sinkBacklog, act delivery.Activity, circuit delivery.CircuitView, ready metav1.Condition) {
	st := &sink.Status
	st.ObservedGeneration = sink.Generation
	st.Pending, st.Retrying, st.Failed, st.OldestPendingTime = b.pending, b.retrying, b.failed, b.oldestPending
	st.DeadLettered = b.deadLettered
	if !act.LastDelivery.IsZero() && (st.LastDeliveryTime == nil || act.LastDelivery.After(st.LastDeliveryTime.Time)) {
		t := delivery.StatusTime(act.LastDelivery)
		st.LastDeliveryTime = &t
	}
	if !act.LastErrorTime.IsZero() && (st.LastErrorTime == nil || act.LastErrorTime.After(st.LastErrorTime.Time)) {
		t := delivery.StatusTime(act.LastErrorTime)
		st.LastError, st.LastErrorTime = act.LastError, &t
	}

	st.Circuit = circuitStatus(circuit)
	if circuit.Open && ready.Status == metav1.ConditionTrue {
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonCircuitOpen
		ready.Message = fmt.Sprintf("the circuit opened at %s, deliveries are held; the next probe is at %s; the last error: %s",
			circuit.OpenedAt.UTC().Format(time.RFC3339), circuit.NextProbe.UTC().Format(time.RFC3339), circuit.LastError)
	}
	// A destination that fails every attempt is not ready, whatever its check said: the
	// last attempt failed and none succeeded since.
	if ready.Status == metav1.ConditionTrue && st.LastErrorTime != nil &&
		(st.LastDeliveryTime == nil || st.LastErrorTime.After(st.LastDeliveryTime.Time)) && b.retrying+b.failed > 0 {
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonDeliveryErrors
		ready.Message = fmt.Sprintf("the last delivery attempt failed at %s: %s", st.LastErrorTime.UTC().Format(time.RFC3339), st.LastError)
	}
	ready.Type, ready.ObservedGeneration = v1alpha1.ConditionReady, sink.Generation
	meta.SetStatusCondition(&st.Conditions, ready)

	if b.failed > 0 {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue,
			Reason: v1alpha1.ReasonDeliveryFailed, ObservedGeneration: sink.Generation,
			Message: fmt.Sprintf("%d stored event(s) gave up on this sink; set the annotation %s on them to a new value to try again",
				b.failed, v1alpha1.AnnotationRetry)})
	} else {
		meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
	}
}

// circuitStatus is the circuit as the status shows it; nil until the breaker has seen an
// attempt to the sink.
func circuitStatus(c delivery.CircuitView) *v1alpha1.CircuitStatus {
	if !c.Known {
		return nil
	}
	st := &v1alpha1.CircuitStatus{State: v1alpha1.CircuitClosed, Trips: c.Trips}
	if !c.OpenedAt.IsZero() {
		t := delivery.StatusTime(c.OpenedAt)
		st.OpenedTime = &t
	}
	if c.Open {
		st.State = v1alpha1.CircuitOpen
		t := delivery.StatusTime(c.NextProbe)
		st.NextProbeTime = &t
	}
	return st
}

// exportBacklog sets the sink's gauges.
func exportBacklog(sink string, b sinkBacklog, now time.Time) {
	sinkPending.WithLabelValues(sink).Set(float64(b.pending))
	sinkRetrying.WithLabelValues(sink).Set(float64(b.retrying))
	sinkFailed.WithLabelValues(sink).Set(float64(b.failed))
	age := 0.0
	if b.oldestPending != nil {
		age = max(now.Sub(b.oldestPending.Time).Seconds(), 0)
	}
	sinkOldestPendingAge.WithLabelValues(sink).Set(age)
}

// forgetBacklog drops a deleted sink's gauges.
func forgetBacklog(sink string) {
	for _, g := range []*prometheus.GaugeVec{sinkPending, sinkRetrying, sinkFailed, sinkOldestPendingAge} {
		g.DeleteLabelValues(sink)
	}
}
