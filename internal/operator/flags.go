package operator

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/chat-operators/officialaccount-operator/tencent"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// EnvPrefix: every flag can also be set as OFFICIALACCOUNT_<FLAG_NAME>, e.g.
// OFFICIALACCOUNT_SDK_APP_ID=1400000000,1400000001.
const EnvPrefix = "OFFICIALACCOUNT_"

// Flags are the manager's command line.
type Flags struct {
	Config                 Config
	SDKAppIDs              stringList
	AllowedSources         stringList
	TrustedProxies         stringList
	TencentRESTEndpoints   stringList
	AuthTokenFile          string
	MetricsAddr, ProbeAddr string
	PprofAddr              string
	// Controllers runs the reconcilers (on the elected replica); without them the process
	// only stores callbacks, for a Deployment of ingest replicas of its own.
	Controllers             bool
	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElection          LeaderElectionTimes
	KubeQPS                 float64
	KubeBurst               int
	Zap                     zap.Options
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

// BindFlags registers the flags on fs with their defaults.
func BindFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{Config: DefaultConfig()}
	w := &f.Config.Webhook
	fs.StringVar(&w.BindAddress, "webhook-bind-address", w.BindAddress, "Address the webhook server listens on.")
	fs.StringVar(&w.Path, "webhook-path", w.Path, "URL path of the webhook; configure the Tencent Chat console with it.")
	fs.Var(&f.SDKAppIDs, "sdk-app-id", "SDKAppID whose callbacks are accepted (required; repeatable or comma-separated).")
	fs.StringVar(&f.AuthTokenFile, "auth-token-file", "", "File of SDKAppID=token lines (several per app while a token rotates), read again when it changes; an app with a token must send a valid Sign.")
	fs.Var(&f.AllowedSources, "allowed-source-cidrs", "Addresses or CIDRs callbacks may come from (Tencent's webhook egress, REST GetIPList); others get 403 before the body is read. Empty: any.")
	fs.Var(&f.TrustedProxies, "trusted-proxy-cidrs", "Peers (the Ingress) whose X-Forwarded-For names the client for --allowed-source-cidrs.")
	fs.BoolVar(&w.AllowUnsigned, "allow-unsigned-callbacks", false, "Accept callbacks of SDKAppIDs that have no token; without it every accepted SDKAppID needs one.")
	fs.DurationVar(&w.MaxRequestSkew, "request-time-skew", w.MaxRequestSkew, "How far a signed RequestTime may be from this server's clock.")
	fs.Int64Var(&w.MaxBodyBytes, "max-body-bytes", w.MaxBodyBytes, "Largest callback body accepted.")
	fs.IntVar(&w.MaxPendingEvents, "max-pending-events", w.MaxPendingEvents, "Stop storing (503 FAIL) while this many stored events are not yet complete, so that a backlog cannot fill etcd; 0: no limit.")
	fs.IntVar(&w.MaxResourcesPerCallback, "max-resources-per-callback", w.MaxResourcesPerCallback, "Most resources (of 500 subscribers) one callback may store; a larger one gets 413 and nothing is stored.")
	fs.StringVar(&w.Namespace, "event-namespace", "", "Namespace to store events in (default: the pod's namespace).")
	fs.DurationVar(&w.StoreTimeout, "store-timeout", w.StoreTimeout, "How long storing one event may take before Tencent is answered FAIL (Tencent waits 2s).")
	fs.DurationVar(&f.Config.DeliveredRetention, "delivered-retention", f.Config.DeliveredRetention, "How long a delivered event is kept; 0 deletes it once delivered, without writing its status (two API writes per event instead of three).")
	fs.DurationVar(&f.Config.FailedRetention, "failed-retention", f.Config.FailedRetention, "How long an event whose delivery failed is kept.")
	fs.IntVar(&f.Config.MaxConcurrentReconciles, "max-concurrent-reconciles", f.Config.MaxConcurrentReconciles, "Events reconciled in parallel; deliveries run in each sink's lanes (spec.maxInFlight).")
	fs.BoolVar(&f.Config.DeliveredEvents, "delivered-events", f.Config.DeliveredEvents, "Record a Normal Event on each resource when it is delivered (one more API write per delivery); failures are always recorded.")
	fs.DurationVar(&f.Config.DeliveryYieldStoreDelay, "delivery-yield-store-delay", f.Config.DeliveryYieldStoreDelay, "Stores that take this much longer than the fastest recent ones make deliveries give way to the webhook for a moment; 0 turns that off.")
	fs.DurationVar(&f.Config.DeliveryYieldMaxWait, "delivery-yield-max-wait", f.Config.DeliveryYieldMaxWait, "Longest a delivery gives way to slow stores before it goes ahead anyway; 0 never waits.")
	fs.Float64Var(&f.KubeQPS, "kube-api-qps", 0, "Client-side limit of the reconcilers' queries per second to the API server, for each of their API clients (one per kind); 0 leaves it to the API server's Priority and Fairness.")
	fs.IntVar(&f.KubeBurst, "kube-api-burst", 0, "Burst above --kube-api-qps (default: twice it).")
	fs.StringVar(&f.MetricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	fs.StringVar(&f.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	fs.StringVar(&f.PprofAddr, "pprof-bind-address", "", "Address of Go's pprof endpoints, for profiling; off when empty.")
	fs.DurationVar(&w.DrainPeriod, "shutdown-drain-period", w.DrainPeriod, "How long the webhook keeps accepting callbacks after SIGTERM, not ready, while endpoints stop routing to it.")
	fs.BoolVar(&f.Controllers, "controllers", true, "Run the reconcilers that deliver events (on the elected replica); false only stores callbacks.")
	fs.DurationVar(&f.Config.ReconcilerShutdownTimeout, "reconciler-shutdown-timeout", f.Config.ReconcilerShutdownTimeout, "How long the reconcilers and the deliveries under way may take to stop; outcomes not yet written are written after.")
	fs.DurationVar(&f.Config.SinkNotFoundGrace, "sink-not-found-grace", f.Config.SinkNotFoundGrace, "How long a delivery whose SubscriptionSink was deleted waits for a sink of that name to come back (re-created by Helm or Argo CD) before it fails.")
	fs.Var(&f.TencentRESTEndpoints, "tencent-rest-endpoints", "URL prefixes besides Tencent's REST domains (https on *.tim.qq.com, *.im.qcloud.com, *.my-imcloud.com) that an OfficialAccountResync's spec.endpoint may name, e.g. a local stand-in; every call there carries the app's admin UserSig (repeatable or comma-separated).")
	fs.DurationVar(&f.Config.Resync.FailureBackoff, "resync-failure-backoff", f.Config.Resync.FailureBackoff, "First wait after an account's resync fails; it doubles with each failure in a row, up to 5m and never beyond the resync's interval.")
	fs.IntVar(&f.Config.Resync.MaxPendingSnapshotParts, "max-pending-snapshot-parts", f.Config.Resync.MaxPendingSnapshotParts, "Stop storing resync snapshots while this many snapshot parts (500 subscribers each) are not yet delivered; apart from --max-pending-events, which they never count against. 0: no limit.")
	fs.BoolVar(&f.LeaderElect, "leader-elect", true, "Elect a leader to run the reconcilers; every replica serves webhooks.")
	fs.StringVar(&f.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the event namespace).")
	fs.DurationVar(&f.LeaderElection.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a standby waits after the leader's last renewal before it takes over.")
	fs.DurationVar(&f.LeaderElection.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew before it gives up leading.")
	fs.DurationVar(&f.LeaderElection.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "How often candidates try to acquire or renew the lease.")
	f.Zap.BindFlags(fs)
	return f
}

// Complete applies the environment to flags not given on the command line.
func (f *Flags) Complete(fs *flag.FlagSet) error {
	if err := applyEnv(fs); err != nil {
		return err
	}
	w := &f.Config.Webhook
	w.SDKAppIDs = f.SDKAppIDs
	if w.Namespace == "" {
		w.Namespace = podNamespace()
	}
	w.TokenFile = f.AuthTokenFile
	for _, prefix := range f.TencentRESTEndpoints {
		if err := tencent.ValidatePrefix(prefix); err != nil {
			return fmt.Errorf("--tencent-rest-endpoints %q: %w", prefix, err)
		}
	}
	f.Config.Resync.AllowedEndpoints = f.TencentRESTEndpoints
	var err error
	if w.Sources.Allowed, err = webhookserver.ParsePrefixes(f.AllowedSources); err != nil {
		return fmt.Errorf("--allowed-source-cidrs: %w", err)
	}
	if w.Sources.TrustedProxies, err = webhookserver.ParsePrefixes(f.TrustedProxies); err != nil {
		return fmt.Errorf("--trusted-proxy-cidrs: %w", err)
	}
	return nil
}

// applyEnv sets each flag not given on the command line from its environment variable.
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	var err error
	fs.VisitAll(func(fl *flag.Flag) {
		name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
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
