// Command officialaccount-operator stores Tencent Cloud Chat's Official Account subscriber
// webhooks as OfficialAccountSubscription resources and delivers them downstream.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/chat-operators/officialaccount-operator/internal/operator"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// envPrefix: every flag can also be set as OFFICIALACCOUNT_<FLAG_NAME>, e.g.
// OFFICIALACCOUNT_SDK_APP_ID=1400000000,1400000001.
const envPrefix = "OFFICIALACCOUNT_"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// stringList is a repeatable flag; a comma-separated value adds each item.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}

type flags struct {
	cfg                     operator.Config
	sdkAppIDs               stringList
	authTokenFile           string
	metricsAddr, probeAddr  string
	leaderElect             bool
	leaderElectionNamespace string
	kubeQPS                 float64
	kubeBurst               int
	zap                     zap.Options
}

func parseFlags(fs *flag.FlagSet, args []string) (*flags, error) {
	f := &flags{cfg: operator.DefaultConfig()}
	w := &f.cfg.Webhook
	fs.StringVar(&w.BindAddress, "webhook-bind-address", w.BindAddress, "Address the webhook server listens on.")
	fs.StringVar(&w.Path, "webhook-path", w.Path, "URL path of the webhook; configure the Tencent Chat console with it.")
	fs.Var(&f.sdkAppIDs, "sdk-app-id", "SDKAppID whose callbacks are accepted (required; repeatable or comma-separated).")
	fs.StringVar(&f.authTokenFile, "auth-token-file", "", "File of SDKAppID=token lines; an app with a token must send a valid Sign.")
	fs.DurationVar(&w.MaxRequestSkew, "request-time-skew", w.MaxRequestSkew, "How far a signed RequestTime may be from this server's clock.")
	fs.Int64Var(&w.MaxBodyBytes, "max-body-bytes", w.MaxBodyBytes, "Largest callback body accepted.")
	fs.StringVar(&w.Namespace, "event-namespace", "", "Namespace to store events in (default: the pod's namespace).")
	fs.DurationVar(&w.StoreTimeout, "store-timeout", w.StoreTimeout, "How long storing one event may take before Tencent is answered FAIL (Tencent waits 2s).")
	fs.DurationVar(&f.cfg.DeliveredRetention, "delivered-retention", f.cfg.DeliveredRetention, "How long a delivered event is kept.")
	fs.DurationVar(&f.cfg.FailedRetention, "failed-retention", f.cfg.FailedRetention, "How long an event whose delivery failed is kept.")
	fs.IntVar(&f.cfg.MaxConcurrentReconciles, "max-concurrent-reconciles", f.cfg.MaxConcurrentReconciles, "Events delivered in parallel.")
	fs.Float64Var(&f.kubeQPS, "kube-api-qps", 100, "Queries per second to the Kubernetes API server.")
	fs.IntVar(&f.kubeBurst, "kube-api-burst", 200, "Burst of queries to the Kubernetes API server.")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "Elect a leader to run the reconcilers; every replica serves webhooks.")
	fs.StringVar(&f.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the pod's namespace).")
	f.zap.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := applyEnv(fs); err != nil {
		return nil, err
	}
	w.SDKAppIDs = f.sdkAppIDs
	if w.Namespace == "" {
		w.Namespace = podNamespace()
	}
	if f.authTokenFile != "" {
		tokens, err := webhookserver.LoadTokens(f.authTokenFile)
		if err != nil {
			return nil, err
		}
		w.Tokens = tokens
	}
	return f, nil
}

// applyEnv sets each flag not given on the command line from its environment variable.
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	var err error
	fs.VisitAll(func(fl *flag.Flag) {
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if value, ok := os.LookupEnv(name); ok && !given[fl.Name] && err == nil {
			if setErr := fs.Set(fl.Name, value); setErr != nil {
				err = fmt.Errorf("%s: %w", name, setErr)
			}
		}
	})
	return err
}

// podNamespace is the namespace the operator runs in, or "default" outside a cluster.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "default"
}

func run() error {
	f, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&f.zap)))

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("no Kubernetes API server to talk to (set KUBECONFIG or --kubeconfig): %w", err)
	}
	restConfig.QPS, restConfig.Burst = float32(f.kubeQPS), f.kubeBurst
	return start(ctrl.SetupSignalHandler(), restConfig, f)
}

func start(ctx context.Context, restConfig *rest.Config, f *flags) error {
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        operator.NewScheme(),
		Metrics:                       metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress:        f.probeAddr,
		LeaderElection:                f.leaderElect,
		LeaderElectionID:              "officialaccount-operator.chat-operators.dev",
		LeaderElectionNamespace:       f.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if _, err := operator.Setup(ctx, mgr, f.cfg); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.Info("starting", "sdkAppIDs", f.cfg.Webhook.SDKAppIDs, "appsWithAuth", len(f.cfg.Webhook.Tokens),
		"eventNamespace", f.cfg.Webhook.Namespace)
	return mgr.Start(ctx)
}
