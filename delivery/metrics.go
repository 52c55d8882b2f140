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

	sinkCircuitOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "officialaccount_sink_circuit_open",
		Help: "1 while the SubscriptionSink's circuit is open (its deliveries held, one probe at a time), 0 while it is closed.",
	}, []string{"sink"})
	sinkCircuitTrips = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "officialaccount_sink_circuit_trips_total",
		Help: "Times the SubscriptionSink's circuit opened.",
	}, []string{"sink"})
)

// forgetCircuitMetrics drops a deleted sink's circuit series.
func forgetCircuitMetrics(sink string) {
	sinkCircuitOpen.DeleteLabelValues(sink)
	sinkCircuitTrips.DeleteLabelValues(sink)
}

// Metrics are the deliveries' metrics, registered with controller-runtime's registry; the
// chart's alerts and dashboard are tested against their names.
var Metrics = []prometheus.Collector{deliveriesTotal, deliveryDuration, sinkCircuitOpen, sinkCircuitTrips}

func init() { metrics.Registry.MustRegister(Metrics...) }
