// Package testenv is what the test suites share: a real kube-apiserver and etcd
// (envtest), Tencent's sample callbacks, and an HTTP receiver that records deliveries.
package testenv

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Fixtures are valid-JSON copies of the samples on Tencent's callback pages.
//
//go:embed fixtures/*.json
var Fixtures embed.FS

// Fixture returns one sample body, e.g. "after-add-subscriber.json".
func Fixture(name string) []byte {
	b, err := Fixtures.ReadFile("fixtures/" + name)
	if err != nil {
		panic(err)
	}
	return b
}

// RepoRoot is the project's top folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// NewEnvironment is an envtest environment with the project's CRDs. The binaries come
// from KUBEBUILDER_ASSETS, which `make test` sets to the ones it built or fetched.
func NewEnvironment() *envtest.Environment {
	return &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
}

// Start starts env, with a hint when the binaries are missing.
func Start(env *envtest.Environment) (*rest.Config, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" && env.BinaryAssetsDirectory == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds kube-apiserver and etcd")
	}
	return env.Start()
}

// StartForTest starts env for one test, stops it when the test ends, and writes a
// kubeconfig for command-line tools (kubectl, helm) to use.
func StartForTest(t testing.TB, env *envtest.Environment) (*rest.Config, string) {
	t.Helper()
	cfg, err := Start(env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, kubeconfig
}
