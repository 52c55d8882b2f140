// Package operator wires the webhook server and the reconcilers into a manager, the same
// way for the binary and for the tests.
package operator

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/controllers"
	"github.com/chat-operators/officialaccount-operator/delivery"
	"github.com/chat-operators/officialaccount-operator/internal/leanclient"
	"github.com/chat-operators/officialaccount-operator/resync"
	"github.com/chat-operators/officialaccount-operator/sinks"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// Config is what the operator does besides being a manager.
type Config struct {
	Webhook                 webhookserver.Options
	DeliveredRetention      time.Duration
	FailedRetention         time.Duration
	MaxConcurrentReconciles int
	// DeliveredEvents records a Normal Event for each delivery.
	DeliveredEvents bool
	// DeliveryYieldStoreDelay: a store that takes this much longer than usual makes fewer
	// deliveries run at once for a moment; 0 never does (package storepressure).
	DeliveryYieldStoreDelay time.Duration
	// DeliveryYieldMaxWait bounds how long a delivery gives way to slow stores; 0 never
	// waits.
	DeliveryYieldMaxWait time.Duration
	// ReconcilerShutdownTimeout bounds how long the reconcilers, and the deliveries under
	// way, may take to stop.
	ReconcilerShutdownTimeout time.Duration
	// SinkNotFoundGrace is how long a delivery whose sink was deleted waits for a sink of
	// that name to come back before it fails.
	SinkNotFoundGrace time.Duration
	Resync            ResyncConfig
}

// ResyncConfig configures the resyncs from Tencent's REST API.
type ResyncConfig struct {
	// AllowedEndpoints are URL prefixes besides Tencent's REST domains that a resync's
	// spec.endpoint may name (a local stand-in, a proxy).
	AllowedEndpoints []string
	// FailureBackoff is the first wait after an account's resync fails.
	FailureBackoff time.Duration
	// MaxPendingSnapshotParts bounds the snapshot parts stored and not yet delivered.
	MaxPendingSnapshotParts int
	// PageBackoff, when set, replaces the scanner's backoff between a page's attempts.
	PageBackoff func(attempt int) time.Duration
}

// DefaultConfig has the flags' defaults; SDKAppIDs and Namespace are left for the caller.
func DefaultConfig() Config {
	return Config{
		Webhook: webhookserver.Options{
			BindAddress:    ":8090",
			Path:           "/callback",
			MaxRequestSkew: time.Minute,
			MaxBodyBytes:   1 << 20,
			// 2,000 subscribers: twenty times what Tencent's REST API adds in one call.
			MaxResourcesPerCallback: 4,
			// About 75 MiB of etcd at 1.5 KiB an event: a day of a sink down at 0.5
			// events/s, far below etcd's default 2 GiB quota.
			MaxPendingEvents: 50000,
			StoreTimeout:     1500 * time.Millisecond,
			// Long enough for the endpoints controller, kube-proxy and an Ingress to stop
			// sending callbacks to a terminating pod (a few seconds in most clusters).
			DrainPeriod: 10 * time.Second,
		},
		// A quarter of the 100 ms answer time the project holds itself to (see
		// docs/performance.md): deliveries give way well before answers slow.
		DeliveryYieldStoreDelay: 25 * time.Millisecond,
		DeliveredRetention:      time.Hour,
		FailedRetention:         168 * time.Hour,
		MaxConcurrentReconciles: 8,
		// Long enough that a burst of callbacks has the API server to itself; deliveries
		// that waited it out go ahead, so a long spell of slow stores slows them down to
		// MaxConcurrentReconciles every 10 s but never stops them.
		DeliveryYieldMaxWait: 10 * time.Second,
		DeliveredEvents:      false,
		// A delivery under way at shutdown may finish and be recorded within its sink's
		// timeout (10 s by default); one still running after this is cancelled.
		ReconcilerShutdownTimeout: 15 * time.Second,
		// Long enough for a Helm upgrade or an Argo CD sync that replaces a sink.
		SinkNotFoundGrace: 10 * time.Minute,
		Resync: ResyncConfig{
			FailureBackoff:          resync.DefaultFailureBackoff,
			MaxPendingSnapshotParts: resync.DefaultMaxPendingSnapshotParts,
		},
	}
}

// NewScheme knows the built-in kinds and this operator's.
func NewScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	return scheme
}

// SetupControllers adds the reconcilers to mgr. ingest, if not nil, is what deliveries
// give way to while the webhook's stores are slow (package storepressure); the ledger
// outlives the manager (see runControllers). It returns the subscription reconciler, whose
// unwritten outcomes the caller writes once mgr has stopped.
func SetupControllers(ctx context.Context, mgr ctrl.Manager, cfg Config, registry *sinks.Registry,
	ingest controllers.StoreActivity, ledger *delivery.Ledger) (*controllers.SubscriptionReconciler, error) {
	activity := &delivery.SinkActivity{}
	breakers := &delivery.Breakers{}
	// The status write every event pays for takes the lean path.
	writer, err := leanclient.Wrap(mgr.GetClient(), mgr.GetConfig(), mgr.GetHTTPClient(), mgr.GetScheme())
	if err != nil {
		return nil, err
	}
	subscriptions := &controllers.SubscriptionReconciler{
		Client:    writer,
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("officialaccount-operator"),
		Sinks:     registry,
		Settings: delivery.Settings{DeliveredRetention: cfg.DeliveredRetention, FailedRetention: cfg.FailedRetention,
			SinkNotFoundGrace: cfg.SinkNotFoundGrace},
		MaxConcurrentReconciles: cfg.MaxConcurrentReconciles,
		RecordDelivered:         cfg.DeliveredEvents,
		Ingest:                  ingest,
		YieldMaxWait:            cfg.DeliveryYieldMaxWait,
		Ledger:                  ledger,
		Activity:                activity,
		Breakers:                breakers,
	}
	if err := subscriptions.SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("setting up the subscription reconciler: %w", err)
	}
	if err := mgr.Add(&controllers.BacklogPublisher{Cache: mgr.GetCache(), Client: mgr.GetClient(), Namespace: cfg.Webhook.Namespace}); err != nil {
		return nil, err
	}
	if err := (&controllers.SinkReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Sinks: registry, Activity: activity,
		Breakers: breakers}).SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("setting up the sink reconciler: %w", err)
	}
	if err := (&controllers.ReplayReconciler{Client: mgr.GetClient()}).SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("setting up the replay reconciler: %w", err)
	}
	resyncs := &resync.Reconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("officialaccount-operator"),
		AllowedEndpoints:        cfg.Resync.AllowedEndpoints,
		FailureBackoff:          cfg.Resync.FailureBackoff,
		MaxPendingSnapshotParts: cfg.Resync.MaxPendingSnapshotParts,
		PageBackoff:             cfg.Resync.PageBackoff,
	}
	if err := resyncs.SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("setting up the resync reconciler: %w", err)
	}
	return subscriptions, nil
}
