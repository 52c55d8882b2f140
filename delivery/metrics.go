package delivery

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
)

// Metrics are the deliveries' metrics, registered with controller-runtime's registry; the
// chart's alerts and dashboard are tested against their names.
var Metrics = []prometheus.Collector{deliveriesTotal, deliveryDuration}

func init() { metrics.Registry.MustRegister(Metrics...) }
