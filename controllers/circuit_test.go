package controllers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// switchableReceiver is a real HTTP server that answers every request with one status
// code, changed at will, and notes when each request came.
type switchableReceiver struct {
	*httptest.Server
	code atomic.Int32
	mu   sync.Mutex
	at   []time.Time
}

func newSwitchableReceiver(code int) *switchableReceiver {
	r := &switchableReceiver{}
	r.code.Store(int32(code))
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		r.at = append(r.at, time.Now())
		r.mu.Unlock()
		w.WriteHeader(int(r.code.Load()))
	}))
	DeferCleanup(r.Close)
	return r
}

func (r *switchableReceiver) times() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.at...)
}

func (r *switchableReceiver) count() int { return len(r.times()) }

// sinkNow reads the sink as stored.
func sinkNow(sink *v1alpha1.SubscriptionSink) *v1alpha1.SubscriptionSink {
	GinkgoHelper()
	var got v1alpha1.SubscriptionSink
	Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(sink), &got)).To(Succeed())
	return &got
}

// sinkEventReasons are the reasons of the Events recorded about the sink.
func sinkEventReasons(sink *v1alpha1.SubscriptionSink) func() []string {
	return func() []string {
		var list eventsv1.EventList
		Expect(k8s.List(context.Background(), &list, client.InNamespace(sink.Namespace))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "SubscriptionSink" && e.Regarding.Name == sink.Name {
				out = append(out, e.Type+"/"+e.Reason)
			}
		}
		return out
	}
}

var _ = Describe("A sink's circuit breaker", func() {
	fastRetry := v1alpha1.RetryPolicy{InitialInterval: &metav1.Duration{Duration: 100 * time.Millisecond},
		MaxInterval: &metav1.Duration{Duration: 100 * time.Millisecond}}

	It("opens after consecutive failures, holds the deliveries while one probes on a doubling schedule, and closes on an answer", func() {
		account := uniqueAccount()
		receiver := newSwitchableReceiver(http.StatusServiceUnavailable)
		sink := newSink("circuit", account, &testenv.Receiver{Server: receiver.Server}, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.Retry = fastRetry
			s.Spec.CircuitBreaker = v1alpha1.CircuitBreaker{ConsecutiveFailures: ptr.To[int32](2),
				ProbeInterval: &metav1.Duration{Duration: 2 * time.Second}, MaxProbeInterval: &metav1.Duration{Duration: 4 * time.Second}}
		})
		sinkObserved(sink)
		subscribe(account, "first")
		Eventually(func() *v1alpha1.CircuitStatus { return sinkNow(sink).Status.Circuit }, time.Minute).
			Should(And(Not(BeNil()), HaveField("State", v1alpha1.CircuitOpen), HaveField("Trips", int32(1))))
		Eventually(sinkNotReady(sink)).Should(SatisfyAll(HavePrefix(v1alpha1.ReasonCircuitOpen+": "), ContainSubstring("503")))
		Eventually(sinkEventReasons(sink)).Should(ContainElement("Warning/" + v1alpha1.ReasonCircuitOpened))
		key := map[string]string{"sink": eventNamespace + "/" + sink.Name}
		Expect(metricValue("officialaccount_sink_circuit_open", key)).To(Equal(1.0))
		Expect(metricValue("officialaccount_sink_circuit_trips_total", key)).To(Equal(1.0))

		// An event that arrives while the circuit is open is held: it makes no attempt of its
		// own, but for being the probe.
		subscribe(account, "second")
		Eventually(func() int { return receiver.count() }, time.Minute).Should(BeNumerically(">=", 4), "two failures, then two probes")
		at := receiver.times()
		Expect(at[2].Sub(at[1])).To(BeNumerically(">=", 2*time.Second), "the first probe waits the probe interval")
		Expect(at[3].Sub(at[2])).To(BeNumerically(">=", 4*time.Second), "the wait doubles, up to its cap")

		receiver.code.Store(http.StatusOK)
		Eventually(func() []string {
			var delivered []string
			for _, sub := range subscriptionsOf(account) {
				if isReady(&sub) {
					delivered = append(delivered, sub.Spec.Subscribers...)
				}
			}
			return delivered
		}, time.Minute).Should(ConsistOf("first", "second"))
		Expect(receiver.count()).To(Equal(6), "two failures, two failed probes, the probe that closed the circuit, the held event")
		Eventually(func() *v1alpha1.CircuitStatus { return sinkNow(sink).Status.Circuit }, time.Minute).
			Should(And(Not(BeNil()), HaveField("State", v1alpha1.CircuitClosed)))
		Eventually(sinkEventReasons(sink)).Should(ContainElement("Normal/" + v1alpha1.ReasonCircuitClosed))
		Expect(metricValue("officialaccount_sink_circuit_open", key)).To(Equal(0.0))
		Eventually(sinkNotReady(sink)).Should(BeEmpty())
	})

	It("turned off (consecutiveFailures: 0), retries every delivery on its own backoff, as without it", func() {
		account := uniqueAccount()
		receiver := newSwitchableReceiver(http.StatusServiceUnavailable)
		sink := newSink("circuit-off", account, &testenv.Receiver{Server: receiver.Server}, func(s *v1alpha1.SubscriptionSink) {
			s.Spec.Retry = fastRetry
			s.Spec.Retry.MaxAttempts = ptr.To[int32](8)
			s.Spec.CircuitBreaker.ConsecutiveFailures = ptr.To[int32](0)
		})
		sinkObserved(sink)
		subscribe(account, "jared")
		sub := onlySubscription(account)
		failed := waitFor(sub.Name, func(s *v1alpha1.OfficialAccountSubscription) bool {
			return meta.IsStatusConditionTrue(s.Status.Conditions, v1alpha1.ConditionStalled)
		})
		Expect(failed.Status.Sinks[0].Attempts).To(BeEquivalentTo(8))
		Expect(receiver.count()).To(Equal(8))
		Eventually(func() *v1alpha1.CircuitStatus { return sinkNow(sink).Status.Circuit }, time.Minute).
			Should(And(Not(BeNil()), HaveField("State", v1alpha1.CircuitClosed), HaveField("Trips", int32(0))))
	})
})
