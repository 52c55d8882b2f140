package operator

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/internal/leanclient"
	"github.com/chat-operators/officialaccount-operator/internal/storepressure"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// webhookClientTimeout bounds every request of the webhook's client that its store's
// deadline does not (the discovery behind its RESTMapper).
const webhookClientTimeout = 10 * time.Second

// Run runs the operator until ctx ends: the webhook server at once, on every replica, and
// the reconcilers while this replica leads (or always, without leader election; never,
// with --controllers=false). When ctx ends, the webhook drains while the reconcilers stop
// and hand over the lease, and Run returns once both are done. started, if not nil, is
// called with the webhook server before it listens.
//
// The webhook does not share the reconcilers' fate: it starts before any cache has
// synced, keeps serving when the lease is lost, and a replica that does not lead holds no
// informer at all, so its memory does not grow with the backlog of stored events.
func Run(ctx context.Context, restConfig *rest.Config, f *Flags, started func(*webhookserver.Server)) error {
	log := ctrl.Log.WithName("operator")
	webhookClient, err := newWebhookClient(restConfig)
	if err != nil {
		return err
	}
	webhookOptions, pressure := webhookWithPressure(f)
	server, err := webhookserver.New(webhookClient, webhookOptions)
	if err != nil {
		return err
	}
	if started != nil {
		started(server)
	}
	log.Info("starting", "sdkAppIDs", f.Config.Webhook.SDKAppIDs, "eventNamespace", f.Config.Webhook.Namespace, "controllers", f.Controllers, "leaderElection", f.LeaderElect)

	// The probes and metrics outlive the webhook's drain, so that /readyz says "draining"
	// rather than refusing connections, and the last answers are counted.
	serversCtx, stopServers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServers()
	serversDone, err := startProcessServers(serversCtx, restConfig, f, server)
	if err != nil {
		return err
	}

	// A webhook server that fails on its own (its port taken) stops the whole process, so
	// that Kubernetes restarts it; the reconcilers only end with runCtx.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var webhookErr error
	webhookDone := make(chan struct{})
	go func() {
		defer close(webhookDone)
		if webhookErr = server.Start(runCtx); runCtx.Err() == nil {
			log.Error(webhookErr, "the webhook server stopped on its own; stopping the operator")
			stop()
		}
	}()
	runControllers(runCtx, restConfig, f, pressure)
	<-webhookDone
	stopServers()
	<-serversDone
	log.Info("stopped")
	return webhookErr
}

// webhookWithPressure returns the webhook's options with each store reported to the
// returned pressure, which the deliveries give way to while stores are slow.
func webhookWithPressure(f *Flags) (webhookserver.Options, *storepressure.Pressure) {
	pressure := &storepressure.Pressure{Delay: f.Config.DeliveryYieldStoreDelay}
	opts := f.Config.Webhook
	opts.OnStore = pressure.ObserveStore
	return opts, pressure
}

// newWebhookClient is the webhook server's client: straight to the API server, with no
// cache, and no client-side rate limit. Its creates answer Tencent, who waits 2 s, so they
// must not queue behind a limit shared with the reconcilers: the API server's Priority and
// Fairness protects it instead, and a rejected create becomes 503 FAIL like any other.
func newWebhookClient(restConfig *rest.Config) (client.Client, error) {
	cfg := rest.CopyConfig(restConfig)
	cfg.QPS, cfg.Burst, cfg.RateLimiter = -1, 0, nil
	cfg.Timeout = webhookClientTimeout
	cfg = rest.AddUserAgent(cfg, "webhook")
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the webhook's HTTP client: %w", err)
	}
	scheme := NewScheme()
	c, err := client.New(cfg, client.Options{Scheme: scheme, HTTPClient: httpClient})
	if err != nil {
		return nil, fmt.Errorf("creating the webhook's client: %w", err)
	}
	// The create every event pays for takes the lean path.
	return leanclient.Wrap(c, cfg, httpClient, scheme)
}
