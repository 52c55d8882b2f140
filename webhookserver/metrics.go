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

func init() {
	metrics.Registry.MustRegister(requestsTotal, storeDuration, unsignedAppsGauge, tokenReloadsTotal, pendingEventsGauge)
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
