package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	deliveriesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "officialaccount_deliveries_total",
		Help: "Delivery attempts to SubscriptionSinks, by sink (namespace/name) and result: delivered, retry or failed.",
	}, []string{"sink", "result"})

	deliveryDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "officialaccount_delivery_duration_seconds",
		Help:    "Time of one delivery attempt to a SubscriptionSink.",
		Buckets: prometheus.DefBuckets,
	}, []string{"sink"})

	yieldSeconds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "officialaccount_delivery_yield_seconds_total",
		Help: "Time deliveries gave way to the webhook while its stores were slow.",
	})
)

func init() {
	metrics.Registry.MustRegister(deliveriesTotal, deliveryDuration, yieldSeconds)
}
