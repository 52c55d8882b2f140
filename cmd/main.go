// Command officialaccount-operator stores Tencent Cloud Chat's Official Account subscriber
// webhooks as OfficialAccountSubscription resources and delivers them downstream.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/chat-operators/officialaccount-operator/internal/operator"
)

func main() {
	flags := operator.BindFlags(flag.CommandLine)
	flag.Parse() // --kubeconfig is registered by controller-runtime
	if err := flags.Complete(flag.CommandLine); err != nil {
		fail(err)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&flags.Zap)))
	restConfig, err := ctrl.GetConfig()
	if err != nil {
		fail(fmt.Errorf("no Kubernetes API server to talk to (set KUBECONFIG or --kubeconfig): %w", err))
	}
	if err := operator.Run(ctrl.SetupSignalHandler(), restConfig, flags, nil); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}
