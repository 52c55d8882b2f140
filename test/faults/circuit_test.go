package faults

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// A sink's outage must cost what the breaker's probes cost, not what its backlog would:
// each pending event retrying on its own backoff would make an attempt at the sink and a
// status write at the API server every few seconds. FAULTS_OUTAGE shortens or lengthens
// the outage; FAULTS_CIRCUIT_OFF=1 runs the same outage with the breaker turned off, for
// comparison, and reports the figures without asserting them.
var _ = Describe("A sink down for 120 s with 2,000 events pending", func() {
	It("costs its probes, not its backlog, while the circuit is open, and drains at its rate limit once back", func() {
		const events = 2000
		outage := 120 * time.Second
		if d, err := time.ParseDuration(os.Getenv("FAULTS_OUTAGE")); err == nil {
			outage = d
		}
		breakerOff := os.Getenv("FAULTS_CIRCUIT_OFF") == "1"
		probe, maxProbe := 10*time.Second, 20*time.Second

		ns := newNamespace()
		receiver, healthy := newEndpoint(), newEndpoint()
		receiver.down() // after the other endpoint has its address: the OS would hand this one's out again
		newHTTPSink(ns, healthy.url(), func(s *v1alpha1.SubscriptionSink) {
			s.Name, s.Spec.OfficialAccounts = "healthy", []string{"@TOA#_healthy"}
		})
		sink := newHTTPSink(ns, receiver.url(), func(s *v1alpha1.SubscriptionSink) {
			s.Spec.OfficialAccounts = []string{"@TOA#_stored"}
			s.Spec.Retry = v1alpha1.RetryPolicy{InitialInterval: &metav1.Duration{Duration: time.Second},
				MaxInterval: &metav1.Duration{Duration: 5 * time.Second}}
			s.Spec.CircuitBreaker = v1alpha1.CircuitBreaker{
				ProbeInterval: &metav1.Duration{Duration: probe}, MaxProbeInterval: &metav1.Duration{Duration: maxProbe}}
			if breakerOff {
				s.Spec.CircuitBreaker.ConsecutiveFailures = ptr.To[int32](0)
			}
			s.Spec.RateLimit = &v1alpha1.RateLimit{PerSecond: 50, Burst: ptr.To[int32](10)}
		})
		port, err := testenv.FreeLoopbackPort()
		Expect(err).NotTo(HaveOccurred())
		metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
		op := startOperator(ns, kubeconfig, fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port))
		idleFrom, idleCPU := time.Now(), op.cpuSeconds()
		Eventually(func() float64 { return metric(metrics, `officialaccount_sink_pending_events{sink="`+ns+`/healthy"}`) },
			time.Minute).Should(BeZero()) // a sink reconciled: the manager is up and idle
		<-time.After(10 * time.Second) // the idle figure this test compares with
		idle := (op.cpuSeconds() - idleCPU) / time.Since(idleFrom).Seconds()

		createEvents(ns, events)
		Eventually(func() int {
			written := 0
			for _, ev := range eventsOf(ns) {
				if ev.Status.ObservedGeneration > 0 {
					written++
				}
			}
			return written
		}, 3*time.Minute, time.Second).Should(Equal(events), "every event has its first status")
		if !breakerOff {
			Eventually(func() *v1alpha1.CircuitStatus {
				var got v1alpha1.SubscriptionSink
				Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(sink), &got)).To(Succeed())
				return got.Status.Circuit
			}, time.Minute).Should(And(Not(BeNil()), HaveField("State", v1alpha1.CircuitOpen)))
		}

		attempts := func() float64 {
			return metric(metrics, `officialaccount_delivery_duration_seconds_count{sink="`+ns+`/downstream"}`)
		}
		reconciles := func() float64 {
			total := 0.0
			for _, result := range []string{"success", "error", "requeue", "requeue_after"} {
				total += metric(metrics, `controller_runtime_reconcile_total{controller="officialaccountsubscription",result="`+result+`"}`)
			}
			return total
		}
		from, cpu0, attempts0, writes0, reconciles0 := time.Now(), op.cpuSeconds(), attempts(), statusWrites(), reconciles()

		stored := time.Now()
		s := startSenders(1, "@TOA#_healthy", time.Hour, func() string { return op.webhookURL })
		Eventually(s.countOK, time.Minute).Should(Equal(1))
		s.halt()
		Eventually(func() []string { return healthy.missing(s.accepted()) }, time.Minute, 50*time.Millisecond).
			Should(BeEmpty(), "a callback for a healthy sink is delivered during the outage")
		healthyLatency := time.Since(stored)

		<-time.After(time.Until(from.Add(outage))) // the outage this test is about
		open := time.Since(from)
		attemptsOpen, writesOpen, reconcilesOpen := attempts()-attempts0, statusWrites()-writes0, reconciles()-reconciles0
		cpuOpen := (op.cpuSeconds() - cpu0) / open.Seconds()
		AddReportEntry("outage", fmt.Sprintf("breaker off: %v; %s open: %.0f attempts at the sink, %.0f status writes, "+
			"%.0f reconciles; manager CPU %.3f cores against %.3f idle; the healthy sink's callback delivered in %s",
			breakerOff, open.Round(time.Second), attemptsOpen, writesOpen, reconcilesOpen, cpuOpen, idle, healthyLatency.Round(time.Millisecond)))
		if !breakerOff {
			probes := float64(open/probe) + 2
			Expect(attemptsOpen).To(BeNumerically("<=", probes), "the sink sees its probes, not the backlog")
			Expect(writesOpen).To(BeNumerically("<=", 50), "status writes do not grow with the backlog")
			Expect(reconcilesOpen).To(BeNumerically("<=", 50), "reconciles do not grow with the backlog")
		}

		receiver.up()
		back := time.Now()
		subscribers := make([]string, events)
		for i := range subscribers {
			subscribers[i] = "user" + strconv.Itoa(i)
		}
		Eventually(func() []string { return receiver.missing(subscribers) }, 5*time.Minute, time.Second).
			Should(BeEmpty(), "every event is delivered once the sink is back, none lost")
		most, drain := receiver.mostInOneSecond()
		total, duplicates := receiver.deliveries()
		AddReportEntry("drain", fmt.Sprintf("all %d delivered %s after the sink came back; the drain took %s, at most %d requests "+
			"in one second; %d requests, %d events twice", events, time.Since(back).Round(time.Second), drain.Round(time.Second),
			most, total, duplicates))
		// The limiter admits at most 60 in any second (a burst of 10 and 50 more); the
		// receiver sees them when they arrive, each a delivery's latency later, so a
		// request admitted just before a second may arrive within it. 100 ms of that jitter
		// is 5 more at 50 a second.
		Expect(most).To(BeNumerically("<=", 60+5), "rateLimit {perSecond: 50, burst: 10}")
		Expect(drain).To(BeNumerically(">=", 39*time.Second), "2,000 deliveries at 50 a second after a burst of 10")
	})
})
