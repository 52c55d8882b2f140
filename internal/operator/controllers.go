package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/controllers"
	"github.com/chat-operators/officialaccount-operator/delivery"
	"github.com/chat-operators/officialaccount-operator/internal/leanclient"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// outcomeWriteTimeout bounds writing, after a term, the delivery outcomes the reconcilers
// could not write during it.
const outcomeWriteTimeout = 10 * time.Second

// runControllers runs the reconcilers until ctx ends: a term each time this replica is
// elected, or one term after another without leader election, or none at all with
// --controllers=false.
func runControllers(ctx context.Context, restConfig *rest.Config, f *Flags, ingest controllers.StoreActivity) {
	log := ctrl.Log.WithName("operator")
	if !f.Controllers {
		log.Info("--controllers=false: this replica only stores callbacks; another delivers them")
		<-ctx.Done()
		return
	}
	// What a term knows of its deliveries beyond their status stays with the process: if
	// the lease comes back to it, it does not deliver them again.
	ledger := &delivery.Ledger{}
	term := func(ctx context.Context) error { return runTerm(ctx, restConfig, f, ingest, ledger) }
	if f.LeaderElect {
		if err := campaign(ctx, restConfig, leaseNamespace(f), f.LeaderElection, term); err != nil {
			log.Error(err, "leader election could not start; this replica only stores callbacks")
			<-ctx.Done()
		}
		return
	}
	for ctx.Err() == nil {
		if err := term(ctx); err != nil {
			log.Error(err, "the reconcilers stopped with an error; starting them again", "after", termRestartDelay)
		}
		pause(ctx, termRestartDelay)
	}
}

// runTerm runs a manager with the reconcilers until ctx ends, then writes what they could
// not: a delivery the sink accepted whose status write failed is written now, with a
// deadline of its own, so that whoever reconciles next does not deliver it again.
func runTerm(ctx context.Context, restConfig *rest.Config, f *Flags, ingest controllers.StoreActivity,
	ledger *delivery.Ledger) error {
	mgr, err := ctrl.NewManager(reconcilerRESTConfig(restConfig, f), ManagerOptions(f))
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	registry := sinks.NewRegistry()
	defer registry.CloseAll()
	subscriptions, err := SetupControllers(ctx, mgr, f.Config, registry, ingest, ledger)
	if err != nil {
		return err
	}
	// A lost lease cancels the deliveries at once, not once the manager has waited for its
	// reconciles: another replica may lead within a retry period.
	abandonOnLostLease := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), errLeaseLost) {
			subscriptions.AbandonDeliveries()
		}
	})
	defer abandonOnLostLease()
	stopping := make(chan time.Time, 1)
	stopWatching := context.AfterFunc(ctx, func() { stopping <- time.Now() })
	defer stopWatching()
	runErr := mgr.Start(ctx)
	timeout := f.Config.ReconcilerShutdownTimeout
	if errors.Is(context.Cause(ctx), errLeaseLost) {
		timeout = 0 // another replica may lead already: cancel the deliveries at once
	}
	subscriptions.WaitForDeliveries(shutdownDeadline(stopping, timeout))
	writeCtx, cancel := context.WithTimeout(context.Background(), outcomeWriteTimeout)
	defer cancel()
	if err := subscriptions.WriteUnwrittenOutcomes(writeCtx); err != nil {
		ctrl.Log.WithName("operator").Error(err, "delivery outcomes could not be written; the next leader delivers those events again")
	}
	ledger.EndTerm()
	return runErr
}

// shutdownDeadline is when the deliveries still under way after the manager stopped are
// cancelled: the reconcilers' shutdown timeout after the term was told to end.
func shutdownDeadline(stopping <-chan time.Time, timeout time.Duration) time.Time {
	select {
	case at := <-stopping:
		return at.Add(timeout)
	default: // the manager stopped by itself
		return time.Now().Add(timeout)
	}
}

// reconcilerRESTConfig applies --kube-api-qps to the reconcilers' clients, each REST
// client with a bucket of its own, as controller-runtime makes them. It also asks for
// uncompressed answers: the API server gzips its watch streams, which cost the manager
// 2 % of its CPU to inflate and the API server 1 % to deflate, to save bytes between a pod
// and its own cluster's API server.
func reconcilerRESTConfig(restConfig *rest.Config, f *Flags) *rest.Config {
	cfg := rest.CopyConfig(restConfig)
	cfg.DisableCompression = true
	if f.KubeQPS > 0 {
		cfg.QPS, cfg.Burst = float32(f.KubeQPS), f.KubeBurst
		if cfg.Burst <= 0 {
			cfg.Burst = int(2 * f.KubeQPS)
		}
	}
	return cfg
}

func leaseNamespace(f *Flags) string {
	if f.LeaderElectionNamespace != "" {
		return f.LeaderElectionNamespace
	}
	return f.Config.Webhook.Namespace
}

// ManagerOptions are the options of a term's manager. It elects nothing and serves
// nothing itself: leadership, probes and metrics belong to the process (see Run).
func ManagerOptions(f *Flags) ctrl.Options {
	return ctrl.Options{
		Scheme:                  NewScheme(),
		NewCache:                newCacheWatchingEventsLean,
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		GracefulShutdownTimeout: ptr.To(f.Config.ReconcilerShutdownTimeout),
		MapperProvider:          newRememberingMapper,
		// Each term builds its controllers anew under the same names.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		// Events, sinks and their Secrets all live in the event namespace: watching only it
		// keeps the cache small and lets the operator run with a namespaced Role. Managed
		// fields are most of a small object's bytes and the operator never reads them.
		// Of the Secrets, only those labelled for sinks: the operator has no business with
		// the others, and does not keep them in memory. Events have no selector:
		// their watch (leanclient.Watcher) applies none, and newCacheWatchingEventsLean
		// refuses one.
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{f.Config.Webhook.Namespace: {}},
			DefaultTransform:  cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{v1alpha1.LabelSinkCredentials: "true"})},
			},
		},
	}
}

// newCacheWatchingEventsLean makes the manager's cache, whose informer of events decodes
// their watch lean (leanclient.Watcher) over the manager's connections. That watch knows
// one namespace and no selector, so a cache configured otherwise is refused here rather
// than filled with what its list would not have kept.
func newCacheWatchingEventsLean(cfg *rest.Config, opts cache.Options) (cache.Cache, error) {
	if len(opts.DefaultNamespaces) != 1 || opts.DefaultLabelSelector != nil || opts.DefaultFieldSelector != nil ||
		opts.NewInformer != nil {
		return nil, errors.New("the lean watch of events needs a cache of one namespace, without default selectors or an informer constructor of its own")
	}
	events := v1alpha1.GroupVersion.WithKind("OfficialAccountSubscription").GroupKind()
	for obj := range opts.ByObject {
		// By kind, not Go type: an unstructured or metadata-only entry of events counts.
		gvk, err := apiutil.GVKForObject(obj, opts.Scheme)
		if err != nil {
			return nil, err
		}
		if gvk.GroupKind() == events {
			return nil, errors.New("the lean watch of events applies no selector: the cache can have no ByObject entry for events")
		}
	}
	var namespace string
	for ns, c := range opts.DefaultNamespaces { // the one
		if c.LabelSelector != nil || c.FieldSelector != nil {
			return nil, errors.New("the lean watch of events applies no selector: the cache's namespace can have none")
		}
		namespace = ns
	}
	watcher, err := leanclient.NewWatcher(cfg, opts.HTTPClient, opts.Scheme, namespace)
	if err != nil {
		return nil, err
	}
	opts.NewInformer = watcher.NewInformer
	return cache.New(cfg, opts)
}
