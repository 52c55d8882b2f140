// Command devenv is `make run`: it runs the operator against the cluster of $KUBECONFIG
// (or --kubeconfig), or, with neither, on a local control plane it starts (the same
// kube-apiserver and etcd as the tests) with a demo sink that prints each delivery.
// Ctrl-C stops everything it started.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/operator"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

const demoSDKAppID = "1400000000"

func main() {
	flags := operator.BindFlags(flag.CommandLine)
	receiverAddr := flag.String("demo-receiver-address", "127.0.0.1:8091", "Where the demo receiver listens (local control plane only).")
	stateDir := flag.String("state-dir", filepath.Join(testenv.RepoRoot(), "bin", "devenv"), "Where the kubeconfig and the delivery log go.")
	flag.Parse()
	setDevDefaults(flags)
	if err := flags.Complete(flag.CommandLine); err != nil {
		fail(err)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&flags.Zap)))
	ctx := ctrl.SetupSignalHandler()

	var err error
	if usesExistingCluster() {
		err = runOnCluster(ctx, flags)
	} else {
		err = runLocally(ctx, flags, *receiverAddr, *stateDir)
	}
	if err != nil {
		fail(err)
	}
}

// setDevDefaults: a laptop has one replica, a demo app that takes unsigned callbacks and
// no drain, unless the user says otherwise.
func setDevDefaults(f *operator.Flags) {
	given := map[string]bool{}
	flag.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	if !given["sdk-app-id"] && os.Getenv(operator.EnvPrefix+"SDK_APP_ID") == "" {
		_ = flag.Set("sdk-app-id", demoSDKAppID)
	}
	if !given["leader-elect"] {
		_ = flag.Set("leader-elect", "false")
	}
	// The demo app takes unsigned callbacks, so that the README's curl works as it is;
	// with a token file, every app needs its token, as in production.
	if !given["allow-unsigned-callbacks"] && !given["auth-token-file"] && os.Getenv(operator.EnvPrefix+"AUTH_TOKEN_FILE") == "" {
		_ = flag.Set("allow-unsigned-callbacks", "true")
	}
	// `go run ./hack/fake-tencent-rest` (docs/resync.md) listens here by default: a
	// resync of the demo may call it with the demo's credentials.
	if !given["tencent-rest-endpoints"] && os.Getenv(operator.EnvPrefix+"TENCENT_REST_ENDPOINTS") == "" {
		_ = flag.Set("tencent-rest-endpoints", "http://127.0.0.1:8092")
	}
	// Nothing routes to a laptop's operator: Ctrl-C stops it at once.
	if !given["shutdown-drain-period"] {
		_ = flag.Set("shutdown-drain-period", "0")
	}
}

func usesExistingCluster() bool {
	if fl := flag.Lookup("kubeconfig"); fl != nil && fl.Value.String() != "" {
		return true
	}
	return os.Getenv("KUBECONFIG") != ""
}

func runOnCluster(ctx context.Context, flags *operator.Flags) error {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	return operator.Run(ctx, cfg, flags, func(s *webhookserver.Server) {
		go announce(ctx, s, flags, "kubectl get oasub -n "+flags.Config.Webhook.Namespace, "")
	})
}

func runLocally(ctx context.Context, flags *operator.Flags, receiverAddr, stateDir string) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	fmt.Println("Starting a local control plane (kube-apiserver and etcd from bin/k8s) ...")
	env := testenv.NewEnvironment()
	cfg, err := testenv.Start(env)
	if err != nil {
		return fmt.Errorf("starting the local control plane: %w", err)
	}
	defer func() {
		fmt.Println("Stopping the local control plane ...")
		_ = env.Stop()
	}()
	kubeconfig := filepath.Join(stateDir, "kubeconfig")
	if err := writeKubeconfig(env.KubeConfig, kubeconfig); err != nil {
		return err
	}

	logPath := filepath.Join(stateDir, "deliveries.log")
	stopReceiver, err := startDemoReceiver(receiverAddr, logPath)
	if err != nil {
		return err
	}
	defer stopReceiver()

	c, err := client.New(cfg, client.Options{Scheme: operator.NewScheme()})
	if err != nil {
		return err
	}
	if err := createDemoSink(ctx, c, flags.Config.Webhook.Namespace, "http://"+receiverAddr+"/events"); err != nil {
		return err
	}
	kubectl := "kubectl --kubeconfig " + relative(kubeconfig) + " get oasub -n " + flags.Config.Webhook.Namespace
	return operator.Run(ctx, cfg, flags, func(s *webhookserver.Server) {
		go announce(ctx, s, flags, kubectl, relative(logPath))
	})
}

func writeKubeconfig(content []byte, path string) error {
	if len(content) == 0 {
		return errors.New("the local control plane gave no kubeconfig")
	}
	return os.WriteFile(path, content, 0o600)
}

func createDemoSink(ctx context.Context, c client.Client, namespace, url string) error {
	sink := &v1alpha1.SubscriptionSink{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: namespace},
		Spec:       v1alpha1.SubscriptionSinkSpec{HTTP: &v1alpha1.HTTPDestination{URL: url}},
	}
	return client.IgnoreAlreadyExists(c.Create(ctx, sink))
}

// startDemoReceiver prints each delivery it gets, and appends it to logPath.
func startDemoReceiver(addr, logPath string) (func(), error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	out := io.MultiWriter(os.Stdout, logFile)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo receiver: %w (choose another with --demo-receiver-address)", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var spec v1alpha1.OfficialAccountSubscriptionSpec
		_ = json.Unmarshal(body, &spec)
		replay := ""
		if name := r.Header.Get("ce-replay"); name != "" {
			replay = " replay=" + name
		}
		fmt.Fprintf(out, "demo receiver: got %s id=%s officialAccount=%s subscribers=%s%s\n",
			r.Header.Get("ce-type"), r.Header.Get("ce-id"), spec.OfficialAccount, strings.Join(spec.Subscribers, ","), replay)
	})}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close(); _ = logFile.Close() }, nil
}

// announce prints, once the webhook server listens, what to try next.
func announce(ctx context.Context, s *webhookserver.Server, flags *operator.Flags, kubectl, deliveryLog string) {
	for s.Addr() == "" {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	port := s.Addr()[strings.LastIndex(s.Addr(), ":")+1:]
	url := "http://localhost:" + port + flags.Config.Webhook.Path
	app := flags.Config.Webhook.SDKAppIDs[0]
	fixture := relative(filepath.Join(testenv.RepoRoot(), "internal", "testenv", "fixtures", "after-add-subscriber.json"))
	fmt.Printf(`
officialaccount-operator is ready.
  webhook:    %s  (SDKAppID %s)
  events in:  namespace %s

Send the sample callback of Tencent's documentation:
  curl -sS -X POST '%s?SdkAppid=%s&CallbackCommand=OfficialAccount.CallbackAfterAddSubscriber&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI' \
    -H 'Content-Type: application/json' --data @%s
or, signed when a token is configured:
  go run ./hack/send-callback --url %s --sdk-app-id %s [--token TOKEN] %s
See it stored and delivered:
  %s
`, url, app, flags.Config.Webhook.Namespace, url, app, fixture, url, app, fixture, kubectl)
	if deliveryLog != "" {
		fmt.Printf("The demo sink's deliveries are printed here and appended to %s.\n", deliveryLog)
	}
	fmt.Println("Stop with Ctrl-C.")
}

// relative shortens a path under the working directory, for commands to copy.
func relative(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}
