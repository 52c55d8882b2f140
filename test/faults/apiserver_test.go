package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// restartedAPIServer is the kube-apiserver a test started in place of envtest's, which
// envtest does not know to stop.
var restartedAPIServer *exec.Cmd

// kubeAPIServer is envtest's kube-apiserver process, found by its parent (this test) and
// its name, so that a test can stop it and start it again with the same command line: the
// same etcd, port and certificates.
type kubeAPIServer struct {
	args []string
	cmd  *exec.Cmd // the process that replaced envtest's, once restarted
}

func findKubeAPIServer() *kubeAPIServer {
	GinkgoHelper()
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	Expect(err).NotTo(HaveOccurred())
	for _, stat := range procs {
		b, err := os.ReadFile(stat)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		comm := s[strings.Index(s, "(")+1 : strings.LastIndex(s, ")")]
		fields := strings.Fields(s[strings.LastIndex(s, ")")+1:])
		if comm != "kube-apiserver" || fields[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(filepath.Dir(stat), "cmdline"))
		Expect(err).NotTo(HaveOccurred())
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(stat)))
		return &kubeAPIServer{args: strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), cmd: &exec.Cmd{Process: mustFindProcess(pid)}}
	}
	Fail("no kube-apiserver child of this test process")
	return nil
}

func mustFindProcess(pid int) *os.Process {
	p, err := os.FindProcess(pid)
	Expect(err).NotTo(HaveOccurred())
	return p
}

// stop ends the API server as a node shutdown would (SIGTERM, then SIGKILL if it is still
// shutting down after 15 s) and waits until it is gone. Should the test fail while it is
// down, it is started again, so that the specs after it have an API server.
func (k *kubeAPIServer) stop() {
	GinkgoHelper()
	pid := k.cmd.Process.Pid
	gone := func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// Gone, or a zombie that its parent will reap.
		return err != nil || strings.Contains(string(b), ") Z ")
	}
	Expect(k.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	if !waitUntil(gone, 15*time.Second) {
		Expect(k.cmd.Process.Kill()).To(Succeed())
	}
	Eventually(gone, time.Minute, 50*time.Millisecond).Should(BeTrue(), "kube-apiserver stops")
	DeferCleanup(func() {
		if k.cmd.Process.Pid == pid {
			k.start()
		}
	})
}

// waitUntil polls cond every 50 ms for at most d.
func waitUntil(cond func() bool, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// start runs the same command line again and waits until it serves.
func (k *kubeAPIServer) start() {
	GinkgoHelper()
	k.cmd = exec.Command(k.args[0], k.args[1:]...)
	k.cmd.Stdout, k.cmd.Stderr = GinkgoWriter, GinkgoWriter
	Expect(k.cmd.Start()).To(Succeed())
	go func() { _ = k.cmd.Wait() }()
	restartedAPIServer = k.cmd
	Eventually(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return k8s.List(ctx, &v1alpha1.OfficialAccountSubscriptionList{}, client.Limit(1))
	}, time.Minute, 200*time.Millisecond).Should(Succeed(), "kube-apiserver serves the CRDs again")
}
