// Package operator wires the webhook server and the reconcilers into a manager, the same
// way for the binary and for the tests.
package operator

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/controllers"
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
	// DeliveryYieldMaxWait bounds how long a delivery gives way to slow stores; 0 never
	// waits.
	DeliveryYieldMaxWait time.Duration
}

// DefaultConfig has the flags' defaults; SDKAppIDs and Namespace are left for the caller.
func DefaultConfig() Config {
	return Config{
		Webhook: webhookserver.Options{
			BindAddress:    ":8090",
			Path:           "/callback",
			MaxRequestSkew: time.Minute,
			MaxBodyBytes:   1 << 20,
			StoreTimeout:   1500 * time.Millisecond,
			// A quarter of the 100 ms answer time the project holds itself to (see the
			// README's Performance section): deliveries give way well before answers slow.
			SlowStoreDelay: 25 * time.Millisecond,
		},
		DeliveredRetention:      time.Hour,
		FailedRetention:         168 * time.Hour,
		MaxConcurrentReconciles: 8,
		// Long enough that a burst of callbacks has the API server to itself; deliveries
		// that waited it out go ahead, so a long spell of slow stores slows them down to
		// MaxConcurrentReconciles every 10 s but never stops them.
		DeliveryYieldMaxWait: 10 * time.Second,
		DeliveredEvents:      true,
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

// Setup adds the webhook server (every replica) and the reconcilers (the leader) to mgr,
// and returns the webhook server.
func Setup(ctx context.Context, mgr ctrl.Manager, cfg Config) (*webhookserver.Server, error) {
	webhookClient, err := unthrottledClient(mgr)
	if err != nil {
		return nil, err
	}
	server, err := webhookserver.New(webhookClient, cfg.Webhook)
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(server); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook", server.ReadyCheck); err != nil {
		return nil, err
	}
	registry := sinks.NewRegistry()
	if err := (&controllers.SubscriptionReconciler{
		Client:                  mgr.GetClient(),
		Recorder:                mgr.GetEventRecorder("officialaccount-operator"),
		Sinks:                   registry,
		DeliveredRetention:      cfg.DeliveredRetention,
		FailedRetention:         cfg.FailedRetention,
		MaxConcurrentReconciles: cfg.MaxConcurrentReconciles,
		RecordDelivered:         cfg.DeliveredEvents,
		Ingest:                  server,
		YieldMaxWait:            cfg.DeliveryYieldMaxWait,
	}).SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("setting up the subscription reconciler: %w", err)
	}
	if err := (&controllers.SinkReconciler{Client: mgr.GetClient(), Sinks: registry}).SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("setting up the sink reconciler: %w", err)
	}
	return server, nil
}

// unthrottledClient is the webhook server's client. Its creates answer Tencent, who waits
// 2 s, so they must not queue behind a client-side rate limit shared with the
// reconcilers: the API server's Priority and Fairness protects it instead, and a
// rejected create becomes 503 FAIL like any other.
func unthrottledClient(mgr ctrl.Manager) (client.Client, error) {
	cfg := rest.CopyConfig(mgr.GetConfig())
	cfg.QPS, cfg.Burst, cfg.RateLimiter = -1, 0, nil
	return client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
}
