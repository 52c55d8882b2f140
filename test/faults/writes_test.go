package faults

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/discovery"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

var _ = Describe("A leader that starts with every event Ready", func() {
	It("reconciles them all and writes no status", func() {
		events := 2000
		if n, err := strconv.Atoi(os.Getenv("FAULTS_READY_EVENTS")); err == nil {
			events = n
		}
		ns := newNamespace() // no sink: each event becomes Ready (NoMatchingSinks) at its first reconcile
		createEvents(ns, events)
		first := startOperator(ns, kubeconfig)
		Eventually(func() int { return countReady(ns) }, 5*time.Minute, time.Second).Should(Equal(events))
		first.kill()

		before := statusWrites()
		port, err := testenv.FreeLoopbackPort()
		Expect(err).NotTo(HaveOccurred())
		metrics := fmt.Sprintf("127.0.0.1:%d", port)
		startOperator(ns, kubeconfig, "--metrics-bind-address="+metrics)
		// A Ready event's reconcile asks to come back at its retention deadline.
		reconciled := func() float64 {
			return metric("http://"+metrics+"/metrics", `controller_runtime_reconcile_total{controller="officialaccountsubscription",result="requeue_after"}`) +
				metric("http://"+metrics+"/metrics", `controller_runtime_reconcile_total{controller="officialaccountsubscription",result="success"}`)
		}
		Eventually(reconciled, 5*time.Minute, time.Second).Should(BeNumerically(">=", events), "the new leader reconciled every event")
		writes := statusWrites() - before
		AddReportEntry("status writes at a leader start", fmt.Sprintf("%.0f for %d Ready events", writes, events))
		Expect(writes).To(BeZero())
	})
})

// statusWrites is the API server's count of writes (PUT or PATCH) of
// OfficialAccountSubscriptions' status so far.
func statusWrites() float64 {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := discovery.NewDiscoveryClientForConfig(restConfig)
	Expect(err).NotTo(HaveOccurred())
	body, err := dc.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	Expect(err).NotTo(HaveOccurred())
	writes := 0.0
	for _, verb := range []string{`verb="PUT"`, `verb="PATCH"`} {
		writes += sumSeries(string(body), "apiserver_request_total{", `resource="officialaccountsubscriptions"`, `subresource="status"`, verb)
	}
	return writes
}

// metric reads one series from a Prometheus endpoint (0 while it is not there).
func metric(url, series string) float64 {
	GinkgoHelper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if value, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, _ := strconv.ParseFloat(value, 64)
			return v
		}
	}
	return 0
}

// sumSeries adds the values of the series of a metric that carry every label given.
func sumSeries(exposition, prefix string, labels ...string) float64 {
	sum := 0.0
	for _, line := range strings.Split(exposition, "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		matches := true
		for _, l := range labels {
			matches = matches && strings.Contains(line, l)
		}
		if fields := strings.Fields(line); matches && len(fields) >= 2 {
			v, _ := strconv.ParseFloat(fields[len(fields)-1], 64)
			sum += v
		}
	}
	return sum
}

var _ = Describe("An operator that keeps no delivered event (--delivered-retention=0)", func() {
	It("delivers every event and deletes it without writing its status", func() {
		const events = 300
		ns, sink := namespaceWithSink()
		createEvents(ns, events)
		subscribers := make([]string, events)
		for i := range subscribers {
			subscribers[i] = "user" + strconv.Itoa(i)
		}
		before := statusWrites()
		startOperator(ns, kubeconfig, "--delivered-retention=0")
		Eventually(func() []string { return sink.missing(subscribers) }, 2*time.Minute, 200*time.Millisecond).
			Should(BeEmpty(), "every event is delivered")
		Eventually(func() int { return len(eventsOf(ns)) }, time.Minute, 200*time.Millisecond).
			Should(BeZero(), "every delivered event is deleted")
		writes := statusWrites() - before
		AddReportEntry("status writes with --delivered-retention=0", fmt.Sprintf("%.0f for %d delivered events", writes, events))
		Expect(writes).To(BeZero())
	})

	It("delivers each event once to each of its sinks, though the cache still holds it after its delete", func() {
		// The deliveries of one event end together, each queueing the event again: a
		// reconcile queued that way after the one that deleted the event finds it still in
		// the cache, without a status.
		const events = 400
		ns, first := namespaceWithSink()
		receivers := map[string]*endpoint{"downstream": first}
		for _, name := range []string{"second", "third", "fourth"} {
			receivers[name] = newEndpoint()
			newHTTPSink(ns, receivers[name].url(), func(s *v1alpha1.SubscriptionSink) { s.Name = name })
		}
		createEvents(ns, events)
		subscribers := make([]string, events)
		for i := range subscribers {
			subscribers[i] = "user" + strconv.Itoa(i)
		}
		op := startOperator(ns, kubeconfig, "--delivered-retention=0")
		for _, receiver := range receivers {
			Eventually(func() []string { return receiver.missing(subscribers) }, 2*time.Minute, 200*time.Millisecond).
				Should(BeEmpty(), "every event is delivered to every sink")
		}
		Eventually(func() int { return len(eventsOf(ns)) }, time.Minute, 200*time.Millisecond).
			Should(BeZero(), "every delivered event is deleted")
		// Once the process has exited, no delivery can still be on its way.
		op.signal(syscall.SIGTERM)
		Eventually(op.exited, time.Minute).Should(BeClosed())
		for name, receiver := range receivers {
			total, duplicates := receiver.deliveries()
			Expect([]int{total, duplicates}).To(Equal([]int{events, 0}), "sink %s gets each event once", name)
		}
	})
})
