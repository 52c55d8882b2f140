package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// The sustained phase runs an event's whole life at a steady rate: the webhook's creates,
// the reconciler's status writes and retention's deletes all at once, long enough for the
// stored resources to level off at rate × (delivery time + retention).

// sustainedResult is what the sustained phase measured.
type sustainedResult struct {
	loadResult
	Phase     string  `json:"phase"`
	Retention string  `json:"retention"`
	Ratio     float64 `json:"ratio"` // DeliveredPerSecond to the ceiling
	Rate      float64 `json:"offeredPerSecond"`
	// DeliveredPerSecond is every event delivered over the time from the first callback to
	// the last delivery: below the offered rate when deliveries fell behind.
	DeliveredPerSecond float64 `json:"deliveredPerSecond"`
	Delivered          int     `json:"deliveredDistinct"`
	Lost               int     `json:"lost"`
	// Stored are the resources the API server held, sampled through the load.
	Stored []storedSample `json:"stored"`
	// Levelled says the stored resources stopped growing: over the second half of the
	// load they grew by no more than a tenth, or a second's events.
	Levelled         bool     `json:"levelled"`
	RequestsPerEvent []string `json:"requestsPerEvent"`
}

type storedSample struct {
	Seconds float64 `json:"seconds"`
	Stored  int     `json:"stored"`
}

const sustainedAccount = "@TOA#_bench_sustained"

// runSustained runs one sustained phase at rate with a manager of its own started with
// the given --delivered-retention, in an emptied event namespace.
func runSustained(ctx context.Context, c client.Client, rc rest.Interface, cfg config, kubeconfig string, meter *cpuMeter,
	rate float64, retention time.Duration, logf func(string, ...any)) (sustainedResult, cpuCost, error) {
	if err := emptyEventNamespace(ctx, c); err != nil {
		return sustainedResult{}, cpuCost{}, err
	}
	name := "sustained-retention-" + retention.String()
	args, prof, err := profiledArgs(cfg, rc, append([]string{"--delivered-retention=" + retention.String()}, cfg.ManagerArgs...))
	if err != nil {
		return sustainedResult{}, cpuCost{}, err
	}
	mgr, err := startManager(ctx, cfg.WorkDir, kubeconfig, "manager-"+name, args, logf)
	if err != nil {
		return sustainedResult{}, cpuCost{}, err
	}
	defer mgr.stop()
	meter.pids[roleManager] = mgr.cmd.Process.Pid
	logf("sustained: %.0f callbacks/s (%.2f of the ceiling) for %s, open loop, --delivered-retention=%s",
		rate, cfg.SustainedFraction, cfg.SustainedDuration, retention)
	res, cost, err := sustained(ctx, c, rc, newSender(mgr.webhookURL, benchApp, cfg.C), meter, prof, name, rate, cfg.SustainedDuration, logf)
	res.Retention = retention.String()
	return res, cost, err
}

// sustained runs the phase against a manager that the caller started with a short
// --delivered-retention, in an event namespace with no resources yet.
func sustained(ctx context.Context, c client.Client, rc rest.Interface, s *sender, meter *cpuMeter, prof *profiler, name string, rate float64,
	duration time.Duration, logf func(string, ...any)) (sustainedResult, cpuCost, error) {
	res := sustainedResult{Rate: rate}
	receiver := testenv.NewReceiver()
	defer receiver.Close()
	sink := &v1alpha1.SubscriptionSink{
		ObjectMeta: metav1.ObjectMeta{Name: "sustained", Namespace: eventNamespace},
		Spec:       v1alpha1.SubscriptionSinkSpec{OfficialAccounts: []string{sustainedAccount}, HTTP: &v1alpha1.HTTPDestination{URL: receiver.URL}},
	}
	if err := c.Create(ctx, sink); err != nil {
		return res, cpuCost{}, err
	}
	defer func() { _ = c.Delete(context.WithoutCancel(ctx), sink) }()
	requestsBefore, err := countRequests(ctx, rc)
	if err != nil {
		return res, cpuCost{}, err
	}
	before := meter.sample()
	start := time.Now()
	loadDone := make(chan loadResult, 1)
	go func() { loadDone <- s.openLoop(ctx, sustainedAccount, rate, duration) }()
	profiled := prof.profile(ctx, name, max(int(duration.Seconds())/2, 1), logf)
	defer profiled()

	sampleEvery := max(duration/12, time.Second)
	for {
		n, err := storedEvents(ctx, c)
		if err != nil {
			return res, cpuCost{}, err
		}
		res.Stored = append(res.Stored, storedSample{Seconds: time.Since(start).Seconds(), Stored: n})
		select {
		case res.loadResult = <-loadDone:
		case <-time.After(sampleEvery):
			continue
		}
		break
	}
	delivered, lastDelivery := waitDelivered(ctx, receiver, res.OK, 5*time.Minute)
	res.Delivered, res.Lost = delivered, res.OK-delivered
	res.DeliveredPerSecond = float64(delivered) / lastDelivery.Sub(start).Seconds()
	// Every event's life ends with retention's delete: the CPU and the requests are counted
	// until the last one is gone.
	if err := waitNoEvents(ctx, c, 2*time.Minute); err != nil {
		return res, cpuCost{}, err
	}
	cost := meter.costSince(before, res.OK)
	if after, err := countRequests(ctx, rc); err == nil {
		res.RequestsPerEvent = after.perEvent(requestsBefore, res.OK)
		logf("sustained, API requests per event: %s", strings.Join(res.RequestsPerEvent, ", "))
	}
	res.Levelled = levelled(res.Stored, rate)
	return res, cost, nil
}

// levelled reports whether the stored count grew over the second half of the samples by
// no more than a tenth of what it was halfway, or a second's worth of events at rate (the
// count moves by the deliveries in flight at each sample, however level it is).
func levelled(samples []storedSample, rate float64) bool {
	if len(samples) < 2 {
		return false
	}
	half, last := samples[len(samples)/2], samples[len(samples)-1]
	return float64(last.Stored-half.Stored) <= max(0.1*float64(half.Stored), rate)
}

// storedEvents counts the event resources in etcd with a one-item list: the API server
// answers the count of the rest without sending them.
func storedEvents(ctx context.Context, c client.Client) (int, error) {
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("OfficialAccountSubscriptionList"))
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.List(ctx, &list, client.InNamespace(eventNamespace), client.Limit(1)); err != nil {
		return 0, err
	}
	n := len(list.Items)
	if remaining := list.GetRemainingItemCount(); remaining != nil {
		n += int(*remaining)
	}
	return n, nil
}

// waitDelivered waits until the receiver has had want distinct events (or the timeout),
// and reports how many it had and when the last new one came.
func waitDelivered(ctx context.Context, receiver *testenv.Receiver, want int, timeout time.Duration) (int, time.Time) {
	seen := map[string]bool{}
	var last time.Time
	for deadline := time.Now().Add(timeout); ctx.Err() == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, r := range receiver.Requests() {
			if id := r.Header.Get("ce-id"); !seen[id] {
				seen[id] = true
				last = r.Received
			}
		}
		if len(seen) >= want {
			break
		}
	}
	return len(seen), last
}

// waitNoEvents waits until no event resource is stored.
func waitNoEvents(ctx context.Context, c client.Client, timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; time.Sleep(500 * time.Millisecond) {
		n, err := storedEvents(ctx, c)
		if err != nil || n == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d event resources still stored after %s", n, timeout)
		}
	}
}

// emptyEventNamespace deletes every event resource and waits until none is left, so that
// a phase starts from nothing. A collection delete of many resources may end before they
// are all gone, so it is sent again until they are.
func emptyEventNamespace(ctx context.Context, c client.Client) error {
	var err error
	for range 10 {
		deleteCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_ = c.DeleteAllOf(deleteCtx, &v1alpha1.OfficialAccountSubscription{}, client.InNamespace(eventNamespace))
		cancel()
		if err = waitNoEvents(ctx, c, 30*time.Second); err == nil {
			return nil
		}
	}
	return err
}
