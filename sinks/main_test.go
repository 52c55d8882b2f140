package sinks

import (
	"os"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// TestMain gives the operator's log a sink, as the manager does: what a driver logs (the
// MySQL driver finding a pooled connection dead after a fault, say) is then printed, not
// replaced by controller-runtime's warning that no logger was set.
func TestMain(m *testing.M) {
	log.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	os.Exit(m.Run())
}
