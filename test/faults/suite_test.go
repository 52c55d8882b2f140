// Package faults kills, stops and blocks the real parts of a running operator (the
// manager binary, kube-apiserver, a sink, status writes) and checks that no callback
// answered OK is lost.
package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/operator"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

const (
	app       = "1400000000"
	leaseName = "officialaccount-operator.chat-operators.dev"
	// sinkBackoff is the test sinks' longest backoff, so that a recovered sink is retried
	// soon.
	sinkBackoff = 2 * time.Second
)

var (
	env        *envtest.Environment
	restConfig *rest.Config
	kubeconfig string
	k8s        client.Client
	managerBin string
)

func TestFaults(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Fault tests (the manager binary, envtest)")
}

var _ = BeforeSuite(func() {
	env = testenv.NewEnvironment()
	var err error
	restConfig, err = testenv.Start(env)
	Expect(err).NotTo(HaveOccurred())
	dir, err := os.MkdirTemp("", "faults-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	Expect(os.WriteFile(kubeconfig, env.KubeConfig, 0o600)).To(Succeed())

	cfg := rest.CopyConfig(restConfig)
	cfg.QPS = -1
	k8s, err = client.New(cfg, client.Options{Scheme: operator.NewScheme()})
	Expect(err).NotTo(HaveOccurred())

	managerBin = filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", managerBin, "./cmd")
	build.Dir = testenv.RepoRoot()
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "building the manager: %s", out)
})

var _ = AfterSuite(func() {
	if restartedAPIServer != nil {
		_ = restartedAPIServer.Process.Signal(syscall.SIGTERM)
		Eventually(func() bool { return restartedAPIServer.ProcessState != nil }, time.Minute).Should(BeTrue())
	}
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// newNamespace gives a test a namespace of its own, so that its operators see only its
// events.
func newNamespace() string {
	GinkgoHelper()
	ns := fmt.Sprintf("faults-%d", time.Now().UnixNano())
	Expect(k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	return ns
}

// namespaceWithSink is a new namespace with an HTTP sink delivering to a new endpoint.
func namespaceWithSink() (string, *endpoint) {
	GinkgoHelper()
	ns := newNamespace()
	sink := newEndpoint()
	newHTTPSink(ns, sink.url())
	return ns, sink
}

// operatorProcess is one replica: the real manager binary.
type operatorProcess struct {
	cmd        *exec.Cmd
	webhookURL string
	probesURL  string
	logPath    string
	exited     chan struct{}
	exitErr    error
}

// startOperator runs the binary on the test API server with production defaults but for
// the addresses and the given flags.
func startOperator(namespace, kubeconfigPath string, args ...string) *operatorProcess {
	GinkgoHelper()
	webhookPort, err := testenv.FreeLoopbackPort()
	Expect(err).NotTo(HaveOccurred())
	probesPort, err := testenv.FreeLoopbackPort()
	Expect(err).NotTo(HaveOccurred())
	logFile, err := os.CreateTemp("", "manager-*.log")
	Expect(err).NotTo(HaveOccurred())
	p := &operatorProcess{
		webhookURL: fmt.Sprintf("http://127.0.0.1:%d/callback", webhookPort),
		probesURL:  fmt.Sprintf("http://127.0.0.1:%d", probesPort),
		logPath:    logFile.Name(),
		exited:     make(chan struct{}),
	}
	base := []string{
		"--kubeconfig", kubeconfigPath, "--sdk-app-id", app, "--event-namespace", namespace,
		"--webhook-bind-address", fmt.Sprintf("127.0.0.1:%d", webhookPort),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probesPort),
		"--metrics-bind-address", "0", "--zap-log-level", "debug",
	}
	if !slices.Contains(args, "--auth-token-file") {
		base = append(base, "--allow-unsigned-callbacks") // the fault tests send unsigned callbacks
	}
	p.cmd = exec.Command(managerBin, append(base, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	Expect(p.cmd.Start()).To(Succeed())
	go func() { p.exitErr = p.cmd.Wait(); logFile.Close(); close(p.exited) }()
	DeferCleanup(func() {
		if CurrentSpecReport().Failed() {
			log, _ := os.ReadFile(p.logPath)
			AddReportEntry("manager log "+p.logPath, tail(string(log), 80))
		}
		p.kill()
		_ = os.Remove(p.logPath)
	})
	Eventually(p.ready, time.Minute, 100*time.Millisecond).Should(Succeed(), "the operator becomes ready")
	return p
}

// What the operator logs when it campaigns, and when a term of leadership ends.
const (
	campaigningLog = "campaigning for the lease"
	lostLeaseLog   = operator.LostLeaseMessage
)

// log is what the process has logged so far.
func (p *operatorProcess) log() string {
	GinkgoHelper()
	b, err := os.ReadFile(p.logPath)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

// ready is nil once /readyz answers 200.
func (p *operatorProcess) ready() error {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(p.probesURL + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s", resp.Status)
	}
	return nil
}

func (p *operatorProcess) signal(sig syscall.Signal) {
	GinkgoHelper()
	Expect(p.cmd.Process.Signal(sig)).To(Succeed())
}

func (p *operatorProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// rssMiB is the process's resident memory now.
func (p *operatorProcess) rssMiB() float64 {
	GinkgoHelper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(status), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(fields[1], 64)
			Expect(err).NotTo(HaveOccurred())
			return kb / 1024
		}
	}
	Fail("no VmRSS in /proc status")
	return 0
}

// cpuSeconds is the CPU time the process has used so far, user and system.
func (p *operatorProcess) cpuSeconds() float64 {
	GinkgoHelper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	Expect(err).NotTo(HaveOccurred())
	// The fields after the command name, which is in parentheses and may hold spaces:
	// utime and stime are the 12th and 13th, in clock ticks (100 a second on Linux).
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, err := strconv.ParseFloat(fields[11], 64)
	Expect(err).NotTo(HaveOccurred())
	stime, err := strconv.ParseFloat(fields[12], 64)
	Expect(err).NotTo(HaveOccurred())
	return (utime + stime) / 100
}

// leaseHolder is who holds the namespace's Lease ("" when none).
func leaseHolder(namespace string) string {
	var lease coordinationv1.Lease
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: leaseName}, &lease); err != nil {
		return ""
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// newHTTPSink points a sink with a short backoff at url.
func newHTTPSink(namespace, url string, mutate ...func(*v1alpha1.SubscriptionSink)) *v1alpha1.SubscriptionSink {
	GinkgoHelper()
	interval := metav1.Duration{Duration: sinkBackoff}
	sink := &v1alpha1.SubscriptionSink{
		ObjectMeta: metav1.ObjectMeta{Name: "downstream", Namespace: namespace},
		Spec: v1alpha1.SubscriptionSinkSpec{
			HTTP:  &v1alpha1.HTTPDestination{URL: url},
			Retry: v1alpha1.RetryPolicy{InitialInterval: &interval, MaxInterval: &interval},
		},
	}
	for _, m := range mutate {
		m(sink)
	}
	Expect(k8s.Create(context.Background(), sink)).To(Succeed())
	return sink
}

// eventsOf lists a namespace's stored events.
func eventsOf(namespace string) []v1alpha1.OfficialAccountSubscription {
	GinkgoHelper()
	return eventsIn(k8s, namespace)
}

func eventsIn(c client.Client, namespace string) []v1alpha1.OfficialAccountSubscription {
	GinkgoHelper()
	var list v1alpha1.OfficialAccountSubscriptionList
	Expect(c.List(context.Background(), &list, client.InNamespace(namespace))).To(Succeed())
	return list.Items
}

// plainKubeconfig points at an API server (the test proxy) over plain HTTP.
func plainKubeconfig(server string) string {
	GinkgoHelper()
	f, err := os.CreateTemp("", "kubeconfig-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.Remove, f.Name())
	_, err = fmt.Fprintf(f, `apiVersion: v1
kind: Config
clusters: [{name: proxy, cluster: {server: %q}}]
users: [{name: proxy, user: {}}]
contexts: [{name: proxy, context: {cluster: proxy, user: proxy}}]
current-context: proxy
`, server)
	Expect(err).NotTo(HaveOccurred())
	Expect(f.Close()).To(Succeed())
	return f.Name()
}

// deliveredInStatus are the events whose status records a delivery to the sink.
func deliveredInStatus(namespace string) map[string]bool {
	GinkgoHelper()
	ids := map[string]bool{}
	for _, ev := range eventsOf(namespace) {
		for _, d := range ev.Status.Sinks {
			if d.State == v1alpha1.DeliveryDelivered {
				ids[ev.Name] = true
			}
		}
	}
	return ids
}

func uniqueAccount() string { return fmt.Sprintf("@TOA#_f%d", time.Now().UnixNano()) }

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
