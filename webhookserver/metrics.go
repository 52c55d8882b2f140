package webhookserver

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "officialaccount_webhook_requests_total",
		Help: "Webhook requests from Tencent Cloud Chat, by command and by how they were answered.",
	}, []string{"command", "result"})

	storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "officialaccount_webhook_store_duration_seconds",
		Help:    "Time to store an event as OfficialAccountSubscription resources, by outcome.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2},
	}, []string{"result"})

	unsignedAppsGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "officialaccount_webhook_unsigned_apps",
		Help: "Accepted SDKAppIDs without a webhook token, whose callbacks are stored unsigned (only with --allow-unsigned-callbacks).",
	})

	pendingEventsGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "officialaccount_webhook_pending_events",
		Help: "Stored events not yet complete, as this replica estimates them for --max-pending-events: the leader's count plus this replica's stores since.",
	})

	tokenReloadsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "officialaccount_webhook_token_reloads_total",
		Help: "Reloads of the auth token file after it changed, by result (loaded, or failed: the last good tokens stay in use).",
	}, []string{"result"})
)

// Metrics are the webhook's metrics, registered with controller-runtime's registry; the
// chart's alerts and dashboard are tested against their names.
var Metrics = []prometheus.Collector{requestsTotal, storeDuration, unsignedAppsGauge, tokenReloadsTotal, pendingEventsGauge}

func init() {
	metrics.Registry.MustRegister(Metrics...)
	// The stored series exist from the start, at 0: an alert on "no callbacks for an hour"
	// must see a replica that never stored one since it started, not an absent series.
	for _, command := range []string{CommandAfterAddSubscriber, CommandAfterDeleteSubscriber} {
		for _, result := range []string{"stored", "duplicate"} {
			requestsTotal.WithLabelValues(command, result)
		}
	}
}

// commandLabel keeps the metric's cardinality bounded whatever commands arrive.
func commandLabel(command string) string {
	if _, handled := actionFor(command); handled {
		return command
	}
	if command == "" {
		return "none"
	}
	return "other"
}
