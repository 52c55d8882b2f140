package resync

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// Results of resyncsTotal.
const (
	resultResynced  = "resynced"
	resultFailed    = "failed"
	resultDestroyed = "destroyed"
	resultStalled   = "stalled"
)

var (
	resyncsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "officialaccount_resyncs_total",
		Help: "Resyncs of one Official Account, by result: resynced, failed, destroyed, or stalled (a run that could try no account: its configuration, credentials or Tencent's service).",
	}, []string{"result"})

	resyncSubscribers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "officialaccount_resync_subscribers",
		Help: "Subscribers the last resync of the account listed, by resync (namespace/name) and Official Account.",
	}, []string{"resync", "official_account"})

	resyncLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "officialaccount_resync_last_success_timestamp_seconds",
		Help: "When the account's last stored snapshot was taken (Unix seconds); the resync's creation until it has one. Destroyed accounts are not exported.",
	}, []string{"resync", "official_account"})

	resyncInterval = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "officialaccount_resync_interval_seconds",
		Help: "The resync's interval, against which officialaccount_resync_last_success_timestamp_seconds is overdue.",
	}, []string{"resync"})

	tencentCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "officialaccount_tencent_rest_calls_total",
		Help: "Calls to Tencent's REST API, by command and outcome: 0 for success, Tencent's error code, or error (no answer, or not Tencent's JSON).",
	}, []string{"command", "code"})
)

// Metrics are the resync's metrics, registered with controller-runtime's registry; the
// chart's alerts and dashboard are tested against their names.
var Metrics = []prometheus.Collector{resyncsTotal, resyncSubscribers, resyncLastSuccess, resyncInterval, tencentCalls}

func init() {
	metrics.Registry.MustRegister(Metrics...)
}

func observeCall(command, outcome string) { tencentCalls.WithLabelValues(command, outcome).Inc() }

func resyncKey(namespace, name string) string {
	return types.NamespacedName{Namespace: namespace, Name: name}.String()
}

// exportStatus exports each account's last success and the interval, and forgets the
// accounts no longer in the spec and those destroyed.
func exportStatus(rs *v1alpha1.OfficialAccountResync, every time.Duration) {
	key := resyncKey(rs.Namespace, rs.Name)
	forgetMetrics(rs.Namespace, rs.Name)
	resyncInterval.WithLabelValues(key).Set(every.Seconds())
	for _, a := range rs.Status.Accounts {
		if a.State == v1alpha1.AccountDestroyed {
			continue
		}
		since := rs.CreationTimestamp.Time
		if a.LastResyncTime != nil {
			since = a.LastResyncTime.Time
			resyncSubscribers.WithLabelValues(key, a.OfficialAccount).Set(float64(a.Subscribers))
		}
		resyncLastSuccess.WithLabelValues(key, a.OfficialAccount).Set(float64(since.Unix()))
	}
}

// resetMetrics drops every resync's series.
func resetMetrics() {
	resyncSubscribers.Reset()
	resyncLastSuccess.Reset()
	resyncInterval.Reset()
}

// forgetMetrics drops a resync's series.
func forgetMetrics(namespace, name string) {
	labels := prometheus.Labels{"resync": resyncKey(namespace, name)}
	resyncSubscribers.DeletePartialMatch(labels)
	resyncLastSuccess.DeletePartialMatch(labels)
	resyncInterval.DeletePartialMatch(labels)
}
