package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/chat-operators/officialaccount-operator/internal/operator"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// etcdQuotaBytes is a backend quota small enough to fill in seconds.
const etcdQuotaBytes = 32 << 20

var _ = Describe("etcd out of space", func() {
	It("answers 503 FAIL, never OK, and stores nothing while etcd's quota is exceeded", func() {
		full := testenv.NewEnvironment()
		full.ControlPlane.Etcd = &envtest.Etcd{}
		full.ControlPlane.Etcd.Configure().Set("quota-backend-bytes", fmt.Sprint(etcdQuotaBytes))
		cfg, err := testenv.Start(full)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(full.Stop)
		kc := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(kc, full.KubeConfig, 0o600)).To(Succeed())
		c, err := client.New(rest.CopyConfig(cfg), client.Options{Scheme: operator.NewScheme()})
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "events"}})).To(Succeed())

		op := startOperator("events", kc)
		fillEtcd(c, "events")

		s := &senders{account: uniqueAccount()}
		saysWhy := 0
		for range 20 {
			a := s.sendOne(op.webhookURL)
			Expect(a.err).NotTo(HaveOccurred())
			Expect([]any{a.status, a.action}).To(Equal([]any{503, "FAIL"}), "a callback while etcd is full")
			if strings.Contains(a.info, "database space exceeded") {
				saysWhy++
			}
		}
		// A store may also run out of time while etcd is busy with its alarm.
		Expect(saysWhy).To(BeNumerically(">", 0), "ErrorInfo names etcd's lack of space")
		stored := 0
		for _, ev := range eventsIn(c, "events") {
			if ev.Spec.OfficialAccount == s.account {
				stored++
			}
		}
		Expect(stored).To(BeZero())
	})
})

// fillEtcd writes 1 MiB Secrets until etcd refuses for lack of space.
func fillEtcd(c client.Client, namespace string) {
	GinkgoHelper()
	payload := []byte(strings.Repeat("x", 1<<20))
	Eventually(func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, GenerateName: "ballast-"},
			Data:       map[string][]byte{"ballast": payload},
		})
		if err == nil {
			return ""
		}
		return err.Error()
	}, 2*time.Minute, 10*time.Millisecond).Should(ContainSubstring("database space exceeded"))
}
