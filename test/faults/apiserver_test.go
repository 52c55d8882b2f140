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

// stop ends the API server as a node shutdown would (SIGTERM) and waits until it is gone.
func (k *kubeAPIServer) stop() {
	GinkgoHelper()
	pid := k.cmd.Process.Pid
	Expect(k.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	Eventually(func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// Gone, or a zombie that envtest will reap.
		return err != nil || strings.Contains(string(b), ") Z ")
	}, time.Minute, 50*time.Millisecond).Should(BeTrue(), "kube-apiserver stops")
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
