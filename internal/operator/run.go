package operator

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// Run runs the manager until ctx ends. started, if not nil, is called with the webhook
// server once the manager is set up.
func Run(ctx context.Context, restConfig *rest.Config, f *Flags, started func(*webhookserver.Server)) error {
	restConfig = rest.CopyConfig(restConfig)
	if f.KubeQPS > 0 {
		restConfig.QPS, restConfig.Burst = float32(f.KubeQPS), f.KubeBurst
		if restConfig.Burst <= 0 {
			restConfig.Burst = int(2 * f.KubeQPS)
		}
	}
	mgr, err := ctrl.NewManager(restConfig, ManagerOptions(f))
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	server, err := Setup(ctx, mgr, f.Config)
	if err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if started != nil {
		started(server)
	}
	ctrl.Log.Info("starting", "sdkAppIDs", f.Config.Webhook.SDKAppIDs, "appsWithAuth", len(f.Config.Webhook.Tokens),
		"eventNamespace", f.Config.Webhook.Namespace)
	return mgr.Start(ctx)
}

// ManagerOptions are the manager's options for these flags; the tests use them too.
func ManagerOptions(f *Flags) ctrl.Options {
	leaseNamespace := f.LeaderElectionNamespace
	if leaseNamespace == "" {
		leaseNamespace = f.Config.Webhook.Namespace
	}
	return ctrl.Options{
		Scheme:                        NewScheme(),
		Metrics:                       metricsserver.Options{BindAddress: f.MetricsAddr},
		HealthProbeBindAddress:        f.ProbeAddr,
		PprofBindAddress:              f.PprofAddr,
		LeaderElection:                f.LeaderElect,
		LeaderElectionID:              "officialaccount-operator.chat-operators.dev",
		LeaderElectionNamespace:       leaseNamespace,
		LeaderElectionReleaseOnCancel: true,
		// Events, sinks and their Secrets all live in the event namespace: watching only it
		// keeps the cache small and lets the operator run with a namespaced Role. Managed
		// fields are most of a small object's bytes and the operator never reads them.
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{f.Config.Webhook.Namespace: {}},
			DefaultTransform:  cache.TransformStripManagedFields(),
		},
	}
}
