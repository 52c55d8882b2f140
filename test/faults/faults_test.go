package faults

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// Short leases, so that a handover takes seconds; the flags are the production ones.
var shortLeases = []string{"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"}

// allDelivered waits until the endpoint has every accepted subscriber.
func allDelivered(sink *endpoint, s *senders) {
	GinkgoHelper()
	accepted := s.accepted()
	Expect(accepted).NotTo(BeEmpty())
	Eventually(func() []string { return sink.missing(accepted) }, 3*time.Minute, 250*time.Millisecond).
		Should(BeEmpty(), "every callback answered OK is delivered")
}

var _ = Describe("A rollout (SIGTERM)", func() {
	It("keeps accepting while not ready for the drain period, and every callback answered OK is stored and delivered", func() {
		ns, sink := namespaceWithSink()
		const drain = 3 * time.Second
		op := startOperator(ns, kubeconfig, "--shutdown-drain-period="+drain.String())
		s := startSenders(32, uniqueAccount(), 0, func() string { return op.webhookURL })
		Eventually(s.countOK, time.Minute).Should(BeNumerically(">=", 100))

		sigterm := time.Now()
		op.signal(syscall.SIGTERM)
		Eventually(op.ready, drain, 20*time.Millisecond).Should(MatchError(ContainSubstring("500")), "readiness fails at once")
		notReady := time.Now()
		Eventually(op.exited, time.Minute).Should(BeClosed())
		drained := time.Since(sigterm)
		s.halt()
		Expect(op.exitErr).NotTo(HaveOccurred(), "the operator exits 0 after draining")

		okWhileNotReady := 0
		for _, a := range s.all() {
			// Within the drain period every callback is accepted and answered (a 503 from an
			// overloaded API server is an answer; a refused or reset connection is not).
			if a.sent.Before(sigterm.Add(drain - 200*time.Millisecond)) {
				Expect(a.err).NotTo(HaveOccurred(), "a callback sent %s after SIGTERM, within the drain period", a.sent.Sub(sigterm))
			}
			if a.ok() && a.sent.After(notReady) {
				okWhileNotReady++
			}
		}
		Expect(okWhileNotReady).To(BeNumerically(">", 0), "callbacks are stored while readiness is false")
		AddReportEntry("drain", "SIGTERM to exit: "+drained.Round(time.Millisecond).String()+" (drain period "+drain.String()+
			"); answered OK after readiness failed: "+strconv.Itoa(okWhileNotReady)+" of "+strconv.Itoa(s.countOK()))

		startOperator(ns, kubeconfig)
		allDelivered(sink, s)
	})
})

var _ = Describe("A crash (SIGKILL) mid-delivery", func() {
	It("delivers every callback answered OK after a restart, repeating at most the deliveries in flight at the kill", func() {
		ns := newNamespace()
		sink := newEndpoint()
		sink.delay.Store(int64(300 * time.Millisecond))
		newHTTPSink(ns, sink.url())
		op := startOperator(ns, kubeconfig)
		s := startSenders(4, uniqueAccount(), 0, func() string { return op.webhookURL })
		Eventually(s.countOK, time.Minute).Should(BeNumerically(">=", 60))
		s.halt()
		Eventually(func() int { return len(sink.begunIDs()) }, time.Minute).Should(BeNumerically(">=", 10))

		op.signal(syscall.SIGKILL)
		Eventually(op.exited).Should(BeClosed())
		begun := sink.begunIDs()
		recorded := deliveredInStatus(ns)
		inFlight := 0
		for _, id := range begun {
			if !recorded[id] {
				inFlight++
			}
		}
		Expect(inFlight).To(BeNumerically(">", 0), "the kill came in the middle of deliveries")

		sink.delay.Store(0)
		startOperator(ns, kubeconfig)
		allDelivered(sink, s)
		_, duplicates := sink.deliveries()
		AddReportEntry("duplicates after SIGKILL", strconv.Itoa(duplicates)+" repeated deliveries; "+strconv.Itoa(inFlight)+
			" in flight at the kill; "+strconv.Itoa(s.countOK())+" events")
		Expect(duplicates).To(BeNumerically("<=", inFlight))
	})
})

var _ = Describe("A leader killed with two replicas running", func() {
	It("hands over to the standby, which delivers every pending event while its webhook answers OK throughout", func() {
		ns, sink := namespaceWithSink()
		leader := startOperator(ns, kubeconfig, shortLeases...)
		Eventually(func() string { return leaseHolder(ns) }, time.Minute).ShouldNot(BeEmpty())
		first := leaseHolder(ns)
		standby := startOperator(ns, kubeconfig, shortLeases...)
		Expect(leaseHolder(ns)).To(Equal(first), "the second replica waits as a standby")

		s := startSenders(8, uniqueAccount(), 0, func() string { return standby.webhookURL })
		Eventually(s.countOK, time.Minute).Should(BeNumerically(">=", 50))
		leader.signal(syscall.SIGKILL)
		killed := time.Now()
		Eventually(func() string { return leaseHolder(ns) }, time.Minute, 50*time.Millisecond).
			ShouldNot(Or(Equal(first), BeEmpty()))
		handover := time.Since(killed)
		okAtHandover := s.countOK()
		Eventually(s.countOK, time.Minute).Should(BeNumerically(">=", okAtHandover+50))
		s.halt()

		for _, a := range s.all() {
			Expect(a.ok()).To(BeTrue(), "the standby answered %d %q %v", a.status, a.action, a.err)
		}
		allDelivered(sink, s)
		AddReportEntry("handover after a leader kill", handover.Round(time.Millisecond).String()+" (lease duration 4s)")
	})

	It("hands the lease over at once on SIGTERM, while the old leader still drains", func() {
		ns, sink := namespaceWithSink()
		// Controller-runtime's lease of 15 s: a standby that had to wait for it to expire
		// would take over only after the old leader, draining 3 s, has exited.
		slowLease := []string{"--leader-elect-lease-duration=15s", "--leader-elect-renew-deadline=10s",
			"--leader-elect-retry-period=500ms", "--shutdown-drain-period=3s"}
		leader := startOperator(ns, kubeconfig, slowLease...)
		Eventually(func() string { return leaseHolder(ns) }, time.Minute).ShouldNot(BeEmpty())
		first := leaseHolder(ns)
		standby := startOperator(ns, kubeconfig, slowLease...)

		leader.signal(syscall.SIGTERM)
		sigterm := time.Now()
		Eventually(func() string { return leaseHolder(ns) }, time.Minute, 20*time.Millisecond).
			ShouldNot(Or(Equal(first), BeEmpty()))
		handover := time.Since(sigterm)
		Expect(leader.exited).NotTo(BeClosed(), "the standby leads before the old leader has finished draining")
		Eventually(leader.exited, time.Minute).Should(BeClosed())

		s := &senders{account: uniqueAccount()}
		Expect(s.sendOne(standby.webhookURL).ok()).To(BeTrue())
		allDelivered(sink, s)
		AddReportEntry("handover on SIGTERM", handover.Round(time.Millisecond).String()+" (lease duration 15s, drain 3s)")
	})

	It("keeps a standby's memory flat however many events are stored", func() {
		stored := 3000
		if n, err := strconv.Atoi(os.Getenv("FAULTS_STORED_EVENTS")); err == nil {
			stored = n
		}
		ns := newNamespace()
		leader := startOperator(ns, kubeconfig, shortLeases...)
		Eventually(func() string { return leaseHolder(ns) }, time.Minute).ShouldNot(BeEmpty())
		standby := startOperator(ns, kubeconfig, shortLeases...)
		leaderBefore, standbyBefore := leader.rssMiB(), standby.rssMiB()

		createEvents(ns, stored)
		Eventually(func() int { return countReady(ns) }, 5*time.Minute, time.Second).Should(Equal(stored),
			"the leader has reconciled every event, so its cache holds them all")
		leaderAfter, standbyAfter := leader.rssMiB(), standby.rssMiB()
		AddReportEntry("RSS with stored events", strconv.Itoa(stored)+" events: leader "+mib(leaderBefore)+" -> "+mib(leaderAfter)+
			", standby "+mib(standbyBefore)+" -> "+mib(standbyAfter))
		Expect(standbyAfter-standbyBefore).To(BeNumerically("<", (leaderAfter-leaderBefore)/4),
			"the standby grows by less than a quarter of the leader's growth")
	})
})

var _ = Describe("Ingest apart from delivery (--controllers=false)", func() {
	It("stores callbacks without campaigning, and a delivering replica delivers them", func() {
		ns, sink := namespaceWithSink()
		ingest := startOperator(ns, kubeconfig, "--controllers=false")
		s := startSenders(2, uniqueAccount(), 0, func() string { return ingest.webhookURL })
		Eventually(s.countOK, time.Minute).Should(BeNumerically(">=", 20))
		s.halt()
		Expect(leaseHolder(ns)).To(BeEmpty(), "an ingest-only replica does not take the lease")

		startOperator(ns, kubeconfig, shortLeases...)
		allDelivered(sink, s)
		Expect(ingest.log()).NotTo(ContainSubstring(campaigningLog))
	})
})

var _ = Describe("kube-apiserver stopped and started again", func() {
	It("answers 503 FAIL, never OK, while it is down, recovers by itself, and delivers every event answered OK", func() {
		ns, sink := namespaceWithSink()
		op := startOperator(ns, kubeconfig, shortLeases...)
		s := startSenders(4, uniqueAccount(), 20*time.Millisecond, func() string { return op.webhookURL })
		Eventually(s.countOK, time.Minute).Should(BeNumerically(">=", 50))

		api := findKubeAPIServer()
		api.stop()
		down := time.Now()
		// Down for longer than the renew deadline, so that the lease is lost too.
		Eventually(func() bool {
			return failedSince(s, down) >= 20 && time.Since(down) > 5*time.Second
		}, time.Minute, 100*time.Millisecond).Should(BeTrue())
		restarting := time.Now()
		api.start()

		okBeforeRecovery := s.countOK()
		Eventually(s.countOK, 2*time.Minute).Should(BeNumerically(">=", okBeforeRecovery+50), "the webhook stores again by itself")
		s.halt()
		Eventually(op.log, time.Minute).Should(ContainSubstring(lostLeaseLog), "the outage cost the lease, and the process went on")
		for _, a := range s.all() {
			if a.sent.After(down) && a.sent.Before(restarting) {
				Expect(a.ok()).To(BeFalse(), "a callback answered OK while kube-apiserver was down")
				if a.err == nil {
					Expect([]any{a.status, a.action}).To(Equal([]any{503, "FAIL"}))
				}
			}
		}
		allDelivered(sink, s)
	})
})

var _ = Describe("Status writes failing after a successful delivery", func() {
	It("delivers once, however many times the write fails", func() {
		ns, sink := namespaceWithSink()
		const failures = 3
		proxy := newStatusFailingProxy(restConfig, failures)
		op := startOperator(ns, plainKubeconfig(proxy.url), "--leader-elect=false")
		s := &senders{account: uniqueAccount()}
		Expect(s.sendOne(op.webhookURL).ok()).To(BeTrue())

		Eventually(func() int { return countReady(ns) }, time.Minute).Should(Equal(1))
		Expect(proxy.failed.Load()).To(BeEquivalentTo(failures))
		Expect(sink.deliveries()).To(Equal(1), "the sink sees exactly one delivery")
	})

	It("writes an outcome it could not write on shutdown, so that the next operator does not deliver again", func() {
		ns, sink := namespaceWithSink()
		proxy := newStatusFailingProxy(restConfig, 1_000_000)
		op := startOperator(ns, plainKubeconfig(proxy.url), "--leader-elect=false", "--shutdown-drain-period=0")
		s := &senders{account: uniqueAccount()}
		Expect(s.sendOne(op.webhookURL).ok()).To(BeTrue())
		Eventually(sink.deliveries, time.Minute).Should(Equal(1))
		Eventually(proxy.failed.Load).Should(BeNumerically(">=", 2), "the status write has failed")

		proxy.failures.Store(0) // the API server is back as the operator stops
		op.signal(syscall.SIGTERM)
		Eventually(op.exited, time.Minute).Should(BeClosed())
		Expect(deliveredInStatus(ns)).To(HaveLen(1), "the outcome was written on shutdown")

		startOperator(ns, kubeconfig)
		Eventually(func() int { return countReady(ns) }, time.Minute).Should(Equal(1))
		Expect(sink.deliveries()).To(Equal(1), "the sink sees exactly one delivery")
	})

	It("keeps a retry asked for while a failure waits to be written", func() {
		ns, sink := namespaceWithSink()
		proxy := newStatusFailingProxy(restConfig, 1_000_000)
		op := startOperator(ns, plainKubeconfig(proxy.url), "--leader-elect=false")
		sink.answer.Store(http.StatusBadRequest) // the event fails for good at its first attempt
		s := &senders{account: uniqueAccount()}
		Expect(s.sendOne(op.webhookURL).ok()).To(BeTrue())
		Eventually(sink.deliveries, time.Minute).Should(Equal(1))
		Eventually(proxy.failed.Load).Should(BeNumerically(">=", 2), "the status write of the failure has failed")

		sink.answer.Store(0) // the receiver is fixed, and the event is retried
		events := eventsOf(ns)
		Expect(events).To(HaveLen(1))
		retried := events[0].DeepCopy()
		retried.Annotations = map[string]string{v1alpha1.AnnotationRetry: "after-the-fix"}
		Expect(k8s.Patch(context.Background(), retried, client.MergeFrom(&events[0]))).To(Succeed())
		Eventually(func() int { total, _ := sink.deliveries(); return total }, time.Minute).
			Should(Equal(2), "the retry delivers again, though the failure was never written")

		proxy.failures.Store(0) // the API server takes status writes again
		Eventually(func() int { return countReady(ns) }, time.Minute).Should(Equal(1), "the event ends delivered, not failed")
	})
})

var _ = Describe("A sink down for 20 s while events arrive", func() {
	It("delivers every event once it is back, losing none", func() {
		ns, sink := namespaceWithSink()
		op := startOperator(ns, kubeconfig)
		sink.down()
		s := startSenders(2, uniqueAccount(), 200*time.Millisecond, func() string { return op.webhookURL })
		<-time.After(20 * time.Second) // the outage this test is about
		s.halt()
		Expect(sink.deliveries()).To(BeZero(), "nothing was delivered while the sink was down")
		Expect(s.countOK()).To(Equal(len(s.all())), "every callback was stored while the sink was down")
		sink.up()
		allDelivered(sink, s)
	})
})

// failedSince counts the callbacks sent after t that were not answered OK.
func failedSince(s *senders, t time.Time) int {
	n := 0
	for _, a := range s.all() {
		if a.sent.After(t) && !a.ok() {
			n++
		}
	}
	return n
}

// countReady counts the namespace's events whose Ready condition is True.
func countReady(namespace string) int {
	n := 0
	for _, ev := range eventsOf(namespace) {
		if meta.IsStatusConditionTrue(ev.Status.Conditions, v1alpha1.ConditionReady) {
			n++
		}
	}
	return n
}

// createEvents stores n events straight through the API, as the webhook would.
func createEvents(namespace string, n int) {
	GinkgoHelper()
	createEventsWith(namespace, n, func(int, *v1alpha1.OfficialAccountSubscription) {})
}

// createEventsWith stores n events as createEvents does, each changed by mutate first.
func createEventsWith(namespace string, n int, mutate func(i int, ev *v1alpha1.OfficialAccountSubscription)) {
	GinkgoHelper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				ev := &v1alpha1.OfficialAccountSubscription{
					ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "oasub-stored-" + strconv.Itoa(i)},
					Spec: v1alpha1.OfficialAccountSubscriptionSpec{
						SDKAppID: app, CallbackCommand: "OfficialAccount.CallbackAfterAddSubscriber", Action: v1alpha1.ActionSubscribe,
						OfficialAccount: "@TOA#_stored", OperatorAccount: "107867", Subscribers: []string{"user" + strconv.Itoa(i)},
						SubscriberCount: 1, EventTime: 1_700_000_000_000 + int64(i), ClientIP: "127.0.0.1", OptPlatform: "RESTAPI",
						ReceivedTime: metav1.Now(),
					},
				}
				mutate(i, ev)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				errs <- k8s.Create(ctx, ev)
				cancel()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		Expect(err).NotTo(HaveOccurred())
	}
}

func mib(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) + " MiB" }
