package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// The backlog of each sink, computed by the sink reconciler every few seconds from the
	// leader's cache. Only the leader exports them.
	sinkPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "officialaccount_sink_pending_events",
		Help: "Stored events waiting to be delivered to the SubscriptionSink (namespace/name), retrying ones included.",
	}, []string{"sink"})
	sinkRetrying = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "officialaccount_sink_retrying_events",
		Help: "Pending events of the SubscriptionSink whose last attempt failed.",
	}, []string{"sink"})
	sinkFailed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "officialaccount_sink_failed_events",
		Help: "Stored events whose delivery to the SubscriptionSink gave up; they wait for the retry annotation or failed retention.",
	}, []string{"sink"})
	sinkOldestPendingAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "officialaccount_sink_oldest_pending_age_seconds",
		Help: "Age of the oldest event waiting for the SubscriptionSink, from when the webhook received it; 0 when none waits.",
	}, []string{"sink"})

	yieldSeconds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "officialaccount_delivery_yield_seconds_total",
		Help: "Time deliveries gave way to the webhook while its stores were slow.",
	})
)

// Metrics are the reconcilers' metrics, registered with controller-runtime's registry; the
// chart's alerts and dashboard are tested against their names.
var Metrics = []prometheus.Collector{yieldSeconds, sinkPending, sinkRetrying, sinkFailed, sinkOldestPendingAge}

func init() { metrics.Registry.MustRegister(Metrics...) }
