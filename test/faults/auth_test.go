package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("Webhook authentication", func() {
	It("is required: without a token or the explicit opt-in the manager exits and says how to set one", func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, managerBin, "--kubeconfig", kubeconfig, "--sdk-app-id", app,
			"--event-namespace", "default", "--webhook-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "0",
			"--metrics-bind-address", "0").CombinedOutput()
		Expect(err).To(HaveOccurred(), "the manager started without a token: %s", out)
		Expect(ctx.Err()).NotTo(HaveOccurred(), "the manager exits by itself")
		Expect(string(out)).To(And(
			ContainSubstring("SDKAppID "+app+" has no webhook authentication token"),
			ContainSubstring("--auth-token-file"), ContainSubstring("--allow-unsigned-callbacks")))
	})

	It("takes a rotated token from the mounted Secret without a restart or a refused callback", func() {
		ns, sink := namespaceWithSink()
		secret := newMountedSecret()
		secret.write(app + "=old-token\n")
		op := startOperator(ns, kubeconfig, "--auth-token-file", secret.path())

		var token atomic.Value
		token.Store("old-token")
		s := startSignedSenders(4, uniqueAccount(), 20*time.Millisecond, func() string { return op.webhookURL },
			func() string { return token.Load().(string) })
		Eventually(s.countOK, time.Minute).Should(BeNumerically(">=", 20))

		// 1. The new token is added next to the old one.
		secret.write(app + "=old-token\n" + app + "=new-token\n")
		probe := &senders{account: uniqueAccount(), token: func() string { return "new-token" }}
		Eventually(func() int { return probe.sendOne(op.webhookURL).status }, time.Minute, 100*time.Millisecond).
			Should(Equal(200), "the new token is accepted once the file changed")
		// 2. Tencent's console switches to it.
		token.Store("new-token")
		Eventually(s.countOK).Should(BeNumerically(">=", s.countOK()+20))
		// 3. The old one is removed.
		secret.write(app + "=new-token\n")
		old := &senders{account: uniqueAccount(), token: func() string { return "old-token" }}
		Eventually(func() int { return old.sendOne(op.webhookURL).status }, time.Minute, 100*time.Millisecond).
			Should(Equal(401), "the old token is refused once it is removed")
		Eventually(s.countOK).Should(BeNumerically(">=", s.countOK()+20))
		s.halt()

		for _, a := range s.all() {
			Expect(a.ok()).To(BeTrue(), "a callback signed with the token in use got %d %q %v", a.status, a.action, a.err)
		}
		Expect(op.exited).NotTo(BeClosed(), "no restart")
		Expect(op.log()).To(ContainSubstring("auth tokens reloaded"))
		allDelivered(sink, s)
	})

	It("keeps the last good tokens when the file changes to one it cannot use", func() {
		ns, _ := namespaceWithSink()
		secret := newMountedSecret()
		secret.write(app + "=good-token\n")
		op := startOperator(ns, kubeconfig, "--auth-token-file", secret.path())
		secret.write("this is not a token file\n")
		Eventually(op.log, time.Minute).Should(ContainSubstring("the last good tokens stay in use"))
		s := &senders{account: uniqueAccount(), token: func() string { return "good-token" }}
		Expect(s.sendOne(op.webhookURL).ok()).To(BeTrue())
		// Still enforced, not dropped with the bad file.
		wrong := &senders{account: uniqueAccount(), token: func() string { return "wrong-token" }}
		Expect(wrong.sendOne(op.webhookURL).status).To(Equal(http.StatusUnauthorized))
	})
})

// mountedSecret is a folder laid out as the kubelet mounts a Secret: the key is a symlink
// into ..data, itself a symlink to a timestamped folder, and an update swaps ..data.
type mountedSecret struct {
	dir     string
	version int
}

func newMountedSecret() *mountedSecret {
	GinkgoHelper()
	m := &mountedSecret{dir: GinkgoT().TempDir()}
	Expect(os.Symlink(filepath.Join("..data", "tokens"), filepath.Join(m.dir, "tokens"))).To(Succeed())
	return m
}

func (m *mountedSecret) path() string { return filepath.Join(m.dir, "tokens") }

// write publishes content as the kubelet does: a new folder, then an atomic rename of a
// new ..data symlink over the old one.
func (m *mountedSecret) write(content string) {
	GinkgoHelper()
	m.version++
	version := fmt.Sprintf("..%d", m.version)
	Expect(os.Mkdir(filepath.Join(m.dir, version), 0o755)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(m.dir, version, "tokens"), []byte(content), 0o600)).To(Succeed())
	Expect(os.Symlink(version, filepath.Join(m.dir, "..data_tmp"))).To(Succeed())
	Expect(os.Rename(filepath.Join(m.dir, "..data_tmp"), filepath.Join(m.dir, "..data"))).To(Succeed())
}
