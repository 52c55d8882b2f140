package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/operator"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

const (
	benchApp       = "1400000000"
	eventNamespace = "events"
)

type config struct {
	N, C          int
	RateFraction  float64 // of the measured ingest rate, for the steady phase
	Rate          float64 // callbacks per second in the steady phase, instead of RateFraction
	Duration      time.Duration
	MemoryObjects int
	// HeldObjects are the events a suspended sink holds in the held phase, measured at
	// rest for HeldRest.
	HeldObjects int
	HeldRest    time.Duration
	// The sustained phase: an open-loop rate as a fraction of the ceiling, for Duration
	// with deliveries deleted Retention after they are delivered.
	SustainedFraction  float64
	SustainedDuration  time.Duration
	SustainedRetention time.Duration
	WorkDir            string
	ProfileDir         string   // where to write CPU profiles of the sustained phase; none when empty
	ManagerArgs        []string // extra flags, to compare settings
	// ServiceAccount runs the manager as the chart's ServiceAccount instead of the bench's
	// admin, whose requests priority and fairness exempts; FlowSchema also applies
	// testdata/flowschema.yaml.
	ServiceAccount, FlowSchema bool
	Skip                       map[string]bool // phases left out: write-costs, memory, held, sustained
}

type results struct {
	Machine       string     `json:"machine"`
	N             int        `json:"n"`
	C             int        `json:"concurrency"`
	CeilingPerSec float64    `json:"ceilingCreatesPerSecond"`
	CeilingRounds []float64  `json:"ceilingRounds"`
	Ingest        loadResult `json:"ingest"`
	IngestRatio   float64    `json:"ingestRatio"`
	// IngestRequestsPerEvent are the ingest phase's API requests per event.
	IngestRequestsPerEvent []string `json:"ingestRequestsPerEvent"`
	EndToEnd               struct {
		loadResult
		ReadySeconds   float64 `json:"readySeconds"`
		ReadyPerSecond float64 `json:"readyPerSecond"`
		Delivered      int     `json:"deliveredDistinct"`
		Lost           int     `json:"lost"`
		// RequestsPerEvent are the API requests of the phase per event, by verb and resource.
		RequestsPerEvent []string `json:"requestsPerEvent"`
	} `json:"endToEnd"`
	EndToEndRatio float64 `json:"endToEndRatio"`
	// EndToEndReference is the least any design must write per event, a create and a
	// status write, straight through a client with C workers: the most end to end can be.
	EndToEndReference      float64    `json:"endToEndReferencePerSecond"`
	EndToEndReferenceRatio float64    `json:"endToEndReferenceRatio"`
	Steady                 loadResult `json:"steady"`
	SteadyRate             float64    `json:"steadyRatePerSecond"`
	// SteadyReference is the same open-loop rate of creates straight through a client, each
	// followed by one status write as the reconciler makes: what the API server alone
	// answers under the load every event costs, whatever the operator does.
	SteadyReference loadResult `json:"steadyReference"`
	// SteadyFloor is the same rate of bare creates straight through a client: no webhook
	// that stores each event before it answers can answer faster.
	SteadyFloor loadResult `json:"steadyFloor"`
	Memory      struct {
		Objects   int     `json:"objectsInCache"`
		PeakRSSMB float64 `json:"peakRSSMiB"`
	} `json:"memory"`
	// Held is the manager at rest with a backlog held by a suspended sink.
	Held *heldResult `json:"held,omitempty"`
	// Sustained are the sustained phases: delivered events kept a while, then not kept.
	Sustained []sustainedResult `json:"sustained"`
	// CPU is where each throughput phase's CPU time went, per event, by process.
	CPU map[string]cpuCost `json:"cpu,omitempty"`
	// WriteCosts is the control plane's CPU per write of an event's life, by CRD variant.
	WriteCosts writeCosts `json:"writeCostsMs"`
	// ManagerIdentity is who the manager ran as: "admin" (exempt from priority and
	// fairness), "service account" or "service account with the FlowSchema".
	ManagerIdentity string   `json:"managerIdentity"`
	ManagerArgs     []string `json:"managerArgs,omitempty"`
	// Skipped are the phases left out. Compare only runs that skipped the same: the
	// write-cost phase leaves two more CRDs and an admission policy in the API server.
	Skipped []string `json:"skipped,omitempty"`
	// WebhookLevelDispatched are the requests the API server dispatched at the FlowSchema's
	// priority level during ingest, per event: 1 when every webhook create matched it.
	WebhookLevelDispatched float64 `json:"webhookLevelDispatchedPerEvent,omitempty"`
}

// The phases whose CPU time is accounted.
const (
	phaseCeiling   = "ceiling"
	phaseReference = "reference"
	phaseIngest    = "ingest"
	phaseEndToEnd  = "end to end"
	// The sustained phases, with retention's deletes: delivered events kept for
	// -sustained-retention, and not kept (--delivered-retention=0).
	phaseSustainedKept    = "sustained, kept"
	phaseSustainedNotKept = "sustained, not kept"
)

// cpuPhases are those phases in the order of the table.
var cpuPhases = []string{phaseCeiling, phaseReference, phaseIngest, phaseEndToEnd, phaseSustainedKept, phaseSustainedNotKept}

func run(ctx context.Context, cfg config, logf func(string, ...any)) (*results, error) {
	res := &results{N: cfg.N, C: cfg.C, Machine: machine(), ManagerIdentity: "admin", ManagerArgs: cfg.ManagerArgs}
	for phase, skipped := range cfg.Skip {
		if skipped {
			res.Skipped = append(res.Skipped, phase)
		}
	}
	slices.Sort(res.Skipped)

	logf("starting the local control plane")
	env := testenv.NewEnvironment()
	restCfg, err := testenv.Start(env)
	if err != nil {
		return nil, err
	}
	defer func() { _ = env.Stop() }()
	restCfg = rest.CopyConfig(restCfg)
	restCfg.QPS, restCfg.Burst = -1, 0 // measure the API server, not a client limit
	c, err := client.NewWithWatch(restCfg, client.Options{Scheme: operator.NewScheme()})
	if err != nil {
		return nil, err
	}
	// Written at once, so that kubectl can look at the API server during the whole run.
	kubeconfig := filepath.Join(cfg.WorkDir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		return nil, err
	}
	meter, err := newCPUMeter()
	if err != nil {
		return nil, err
	}
	res.CPU = map[string]cpuCost{}
	for _, ns := range []string{"ceiling", eventNamespace} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}

	managerKubeconfig := kubeconfig
	if cfg.ServiceAccount || cfg.FlowSchema {
		res.ManagerIdentity = "service account"
		if managerKubeconfig, err = serviceAccountKubeconfig(ctx, env, c, cfg.WorkDir); err != nil {
			return nil, err
		}
	}
	if cfg.FlowSchema {
		res.ManagerIdentity = "service account with the FlowSchema"
		if err := applyFlowSchema(ctx, c); err != nil {
			return nil, err
		}
	}

	// A fresh API server is still busy with its own start-up for the first seconds, and it
	// grows with every phase; the ceiling is the better of a run at the start and one just
	// before the operator starts. Taking the better one makes every ratio harder to meet,
	// never easier.
	if err := measureCeiling(ctx, c, cfg, res, meter, logf); err != nil {
		return nil, err
	}
	logf("end-to-end reference: %d creates, each followed by a status write, straight through a client", cfg.N)
	perSecond, cost, err := measureReference(ctx, c, cfg, meter, "reference", writeDeliveredStatus)
	if err != nil {
		return nil, err
	}
	res.CPU[phaseReference] = cost
	if err := measureCeiling(ctx, c, cfg, res, meter, logf); err != nil {
		return nil, err
	}
	res.EndToEndReference, res.EndToEndReferenceRatio = perSecond, perSecond/res.CeilingPerSec
	if !cfg.Skip["write-costs"] {
		if res.WriteCosts, err = measureWriteCosts(ctx, c, meter, cfg.N, cfg.C, logf); err != nil {
			return nil, err
		}
	}

	clientset, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	rc := clientset.CoreV1().RESTClient()
	args, prof, err := profiledArgs(cfg, rc, cfg.ManagerArgs)
	if err != nil {
		return nil, err
	}
	mgr, err := startManager(ctx, cfg.WorkDir, managerKubeconfig, "manager", args, logf)
	if err != nil {
		return nil, err
	}
	defer mgr.stop()
	meter.pids[roleManager] = mgr.cmd.Process.Pid
	s := newSender(mgr.webhookURL, benchApp, cfg.C)

	logf("ingest: %d callbacks through the webhook, %d senders", cfg.N, cfg.C)
	requestsBefore, err := countRequests(ctx, rc)
	if err != nil {
		return nil, err
	}
	dispatchedBefore, err := dispatchedAt(ctx, rc, webhookPriorityLevel)
	if err != nil {
		return nil, err
	}
	before := meter.sample()
	// A 2 s profile from the start of the phase, which lasts a few seconds at full size.
	profiled := prof.profile(ctx, "ingest", 2, logf)
	res.Ingest = s.closedLoop(ctx, "@TOA#_bench_ingest", cfg.N, cfg.C)
	res.CPU[phaseIngest] = meter.costSince(before, res.Ingest.OK)
	res.IngestRatio = res.Ingest.PerSecond / res.CeilingPerSec
	if requestsAfter, err := countRequests(ctx, rc); err == nil {
		res.IngestRequestsPerEvent = requestsAfter.perEvent(requestsBefore, res.Ingest.OK)
		logf("ingest, API requests per event: %s", strings.Join(res.IngestRequestsPerEvent, ", "))
	}
	if cfg.FlowSchema && res.Ingest.OK > 0 {
		dispatched, err := dispatchedAt(ctx, rc, webhookPriorityLevel)
		if err != nil {
			return nil, err
		}
		res.WebhookLevelDispatched = (dispatched - dispatchedBefore) / float64(res.Ingest.OK)
		logf("ingest, requests dispatched at priority level %s per event: %.2f", webhookPriorityLevel, res.WebhookLevelDispatched)
	}
	profiled()

	// Each phase starts with an idle operator: the ingest phase's events, which match no
	// sink, must not be reconciled on the end-to-end phase's time.
	if err := waitReconciled(ctx, c, 10*time.Minute, nil); err != nil {
		return nil, err
	}
	logf("end to end: %d callbacks to an HTTP sink that answers 200", cfg.N)
	if requestsBefore, err = countRequests(ctx, rc); err != nil {
		return nil, err
	}
	before = meter.sample()
	profiled = prof.profile(ctx, "end-to-end", 8, logf)
	if err := endToEnd(ctx, c, s, cfg, res); err != nil {
		return nil, err
	}
	res.CPU[phaseEndToEnd] = meter.costSince(before, res.EndToEnd.OK)
	if requestsAfter, err := countRequests(ctx, rc); err == nil {
		res.EndToEnd.RequestsPerEvent = requestsAfter.perEvent(requestsBefore, res.EndToEnd.OK)
		logf("end to end, API requests per event: %s", strings.Join(res.EndToEnd.RequestsPerEvent, ", "))
	}
	profiled() // after the phase's figures: waiting for the profile is no part of them
	res.EndToEndRatio = res.EndToEnd.ReadyPerSecond / res.CeilingPerSec

	res.SteadyRate = res.Ingest.PerSecond * cfg.RateFraction
	if cfg.Rate > 0 {
		res.SteadyRate = cfg.Rate
	}
	logf("steady load: %.0f callbacks/s for %s, open loop", res.SteadyRate, cfg.Duration)
	res.Steady = s.openLoop(ctx, "@TOA#_bench_steady", res.SteadyRate, cfg.Duration)

	// The reference must not share the API server with the operator's backlog.
	if err := waitReconciled(ctx, c, 10*time.Minute, nil); err != nil {
		return nil, err
	}
	// The floor first: the reference may overload the API server, and the floor must not
	// inherit that.
	logf("steady floor: %.0f bare creates/s straight through a client for %s", res.SteadyRate, cfg.Duration)
	res.SteadyFloor = referenceSteadyLoad(ctx, c, res.SteadyRate, cfg.Duration, "steady-floor", false)
	logf("steady reference: %.0f creates/s, each with a status write, straight through a client for %s", res.SteadyRate, cfg.Duration)
	res.SteadyReference = referenceSteadyLoad(ctx, c, res.SteadyRate, cfg.Duration, "steady-reference", true)

	if !cfg.Skip["memory"] {
		logf("memory: filling the event namespace to %d resources", cfg.MemoryObjects)
		if err := fillForMemory(ctx, c, cfg, res); err != nil {
			return nil, err
		}
		if res.Memory.PeakRSSMB, err = mgr.peakRSSMiB(); err != nil {
			return nil, err
		}
	}
	if !cfg.Skip["held"] {
		logf("held: %d events for a suspended sink, then the manager at rest for %s", cfg.HeldObjects, cfg.HeldRest)
		held, err := heldBacklog(ctx, c, meter, prof, cfg.HeldObjects, cfg.C, cfg.HeldRest, logf)
		if err != nil {
			return nil, fmt.Errorf("held: %w", err)
		}
		res.Held = &held
	}
	mgr.stop()
	if cfg.Skip["sustained"] {
		return res, nil
	}

	// Each sustained phase starts from an empty namespace, with a manager of its own that
	// deletes delivered events soon, or at once.
	for _, phase := range []struct {
		name      string
		retention time.Duration
	}{{phaseSustainedKept, cfg.SustainedRetention}, {phaseSustainedNotKept, 0}} {
		r, cost, err := runSustained(ctx, c, rc, cfg, managerKubeconfig, meter, cfg.SustainedFraction*res.CeilingPerSec, phase.retention, logf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", phase.name, err)
		}
		r.Phase, r.Ratio = phase.name, r.DeliveredPerSecond/res.CeilingPerSec
		res.Sustained = append(res.Sustained, r)
		res.CPU[phase.name] = cost
	}
	return res, nil
}

// measureCeiling runs one round of bare creates and keeps the best round, and its CPU
// cost, as the ceiling.
func measureCeiling(ctx context.Context, c client.Client, cfg config, res *results, meter *cpuMeter, logf func(string, ...any)) error {
	logf("ceiling, round %d: %d creates straight through a client, %d workers", len(res.CeilingRounds)+1, cfg.N, cfg.C)
	perSecond, cost, err := measureReference(ctx, c, cfg, meter, "ceiling", nil)
	if err != nil {
		return err
	}
	res.CeilingRounds = append(res.CeilingRounds, perSecond)
	if perSecond > res.CeilingPerSec {
		res.CeilingPerSec, res.CPU[phaseCeiling] = perSecond, cost
	}
	return nil
}

// measureReference creates N events straight through a client with C workers, calling
// then on each once it exists, and reports the events per second and their CPU cost. It
// leaves the "ceiling" namespace empty, as the operator never sees it.
func measureReference(ctx context.Context, c client.Client, cfg config, meter *cpuMeter, prefix string,
	then func(context.Context, client.Client, *v1alpha1.OfficialAccountSubscription) error) (float64, cpuCost, error) {
	before := meter.sample()
	created, elapsed, err := createObjects(ctx, c, benchAccount, "ceiling", prefix, cfg.N, cfg.C, then)
	if err != nil {
		return 0, cpuCost{}, err
	}
	cost := meter.costSince(before, created)
	if err := c.DeleteAllOf(ctx, &v1alpha1.OfficialAccountSubscription{}, client.InNamespace("ceiling")); err != nil {
		return 0, cpuCost{}, err
	}
	return float64(created) / elapsed.Seconds(), cost, nil
}

// createObjects creates n valid events of the account in a namespace with c workers,
// calling then (when not nil) on each after its create.
func createObjects(ctx context.Context, c client.Client, account, namespace, prefix string, n, workers int,
	then func(context.Context, client.Client, *v1alpha1.OfficialAccountSubscription) error) (int, time.Duration, error) {
	var created atomic.Int64
	var firstErr error
	var once sync.Once
	start := time.Now()
	forEachConcurrently(ctx, n, workers, func(i int) bool {
		obj := accountObject(account, namespace, fmt.Sprintf("%s-%d", prefix, i), i)
		err := c.Create(ctx, obj)
		if err == nil && then != nil {
			err = then(ctx, c, obj)
		}
		if err != nil {
			once.Do(func() { firstErr = err })
			return false
		}
		created.Add(1)
		return true
	})
	return int(created.Load()), time.Since(start), firstErr
}

// writeDeliveredStatus writes the status the reconciler writes for an event delivered to
// one sink at the first attempt, with the same kind of request (a merge patch with an
// optimistic lock).
func writeDeliveredStatus(ctx context.Context, c client.Client, obj *v1alpha1.OfficialAccountSubscription) error {
	patch := client.MergeFromWithOptions(obj.DeepCopy(), client.MergeFromWithOptimisticLock{})
	obj.Status = deliveredStatus(obj.Generation, 1)
	return c.Status().Patch(ctx, obj, patch)
}

// deliveredStatus is the status the reconciler writes for an event delivered to one sink
// on the given attempt.
func deliveredStatus(generation int64, attempt int32) v1alpha1.OfficialAccountSubscriptionStatus {
	now := metav1.Now()
	status := v1alpha1.OfficialAccountSubscriptionStatus{
		ObservedGeneration: generation,
		Sinks: []v1alpha1.SinkDelivery{{Name: "bench", State: v1alpha1.DeliveryDelivered, Attempts: attempt,
			FirstAttemptTime: &now, LastAttemptTime: &now, DeliveredTime: &now}},
		CompletionTime: &now,
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonDelivered, Message: fmt.Sprintf("delivered to 1 sink(s) on attempt %d", attempt), ObservedGeneration: generation})
	return status
}

// benchAccount is the Official Account of the events the bench stores itself.
const benchAccount = "@TOA#_bench"

// sampleObject is the i-th valid event of benchAccount.
func sampleObject(namespace, name string, i int) *v1alpha1.OfficialAccountSubscription {
	return accountObject(benchAccount, namespace, name, i)
}

// accountObject is the i-th valid event of an account.
func accountObject(account, namespace, name string, i int) *v1alpha1.OfficialAccountSubscription {
	return &v1alpha1.OfficialAccountSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{
			v1alpha1.LabelSDKAppID: benchApp, v1alpha1.LabelAction: "Subscribe",
			v1alpha1.LabelOfficialAccountHash: v1alpha1.OfficialAccountHash(account)}},
		Spec: v1alpha1.OfficialAccountSubscriptionSpec{
			SDKAppID: benchApp, CallbackCommand: webhookserver.CommandAfterAddSubscriber, Action: v1alpha1.ActionSubscribe,
			OfficialAccount: account, OperatorAccount: "107867", Subscribers: []string{"jared", fmt.Sprintf("user-%d", i)},
			SubscriberCount: 2, EventTime: 1670574414123 + int64(i), ClientIP: "127.0.0.1", OptPlatform: "RESTAPI",
			ReceivedTime: metav1.Now(),
		},
	}
}

// referenceSteadyLoad creates objects at rate in the "ceiling" namespace straight through a
// client, timing the creates, and writes the delivered status to each when withStatus.
// Bare creates are the floor under the webhook's answer latency: no webhook that stores
// before it answers can answer faster.
func referenceSteadyLoad(ctx context.Context, c client.Client, rate float64, duration time.Duration, prefix string, withStatus bool) loadResult {
	return openLoop(rate, duration, func(i int) (bool, time.Duration) {
		obj := sampleObject("ceiling", fmt.Sprintf("%s-%d", prefix, i), i)
		begin := time.Now()
		err := c.Create(ctx, obj)
		took := time.Since(begin)
		if err != nil {
			return false, took
		}
		if withStatus {
			_ = writeDeliveredStatus(ctx, c, obj)
		}
		return true, took
	})
}

// endToEnd posts events for a sink and times until every one is Ready, counting what the
// sink received.
func endToEnd(ctx context.Context, c client.WithWatch, s *sender, cfg config, res *results) error {
	const account = "@TOA#_bench_e2e"
	receiver := testenv.NewReceiver()
	defer receiver.Close()
	sink := &v1alpha1.SubscriptionSink{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: eventNamespace},
		Spec:       v1alpha1.SubscriptionSinkSpec{OfficialAccounts: []string{account}, HTTP: &v1alpha1.HTTPDestination{URL: receiver.URL}},
	}
	if err := c.Create(ctx, sink); err != nil {
		return err
	}
	var list v1alpha1.OfficialAccountSubscriptionList
	w, err := c.Watch(ctx, &list, client.InNamespace(eventNamespace),
		client.MatchingLabels{v1alpha1.LabelOfficialAccountHash: v1alpha1.OfficialAccountHash(account)})
	if err != nil {
		return err
	}
	defer w.Stop()

	start := time.Now()
	readyNames := make(chan map[string]bool, 1)
	go func() { readyNames <- collectReady(w, cfg.N, 5*time.Minute) }()
	res.EndToEnd.loadResult = s.closedLoop(ctx, account, cfg.N, cfg.C)
	ready := <-readyNames
	res.EndToEnd.ReadySeconds = time.Since(start).Seconds()
	res.EndToEnd.ReadyPerSecond = float64(len(ready)) / res.EndToEnd.ReadySeconds

	delivered := map[string]bool{}
	for _, r := range receiver.Requests() {
		delivered[r.Header.Get("ce-id")] = true
	}
	res.EndToEnd.Delivered = len(delivered)
	res.EndToEnd.Lost = res.EndToEnd.OK - len(delivered)
	for name := range ready {
		if !delivered[name] {
			return fmt.Errorf("event %s is Ready but its sink never received it", name)
		}
	}
	return nil
}

// collectReady reads the watch until want resources are Ready=True (or the timeout).
func collectReady(w watch.Interface, want int, timeout time.Duration) map[string]bool {
	ready := map[string]bool{}
	deadline := time.After(timeout)
	for len(ready) < want {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return ready
			}
			if sub, isSub := ev.Object.(*v1alpha1.OfficialAccountSubscription); isSub &&
				meta.IsStatusConditionTrue(sub.Status.Conditions, v1alpha1.ConditionReady) {
				ready[sub.Name] = true
			}
		case <-deadline:
			return ready
		}
	}
	return ready
}

// fillForMemory brings the event namespace to MemoryObjects resources and waits until the
// operator has reconciled them all, so that all are in its cache and it has worked on them.
func fillForMemory(ctx context.Context, c client.Client, cfg config, res *results) error {
	var list v1alpha1.OfficialAccountSubscriptionList
	if err := c.List(ctx, &list, client.InNamespace(eventNamespace)); err != nil {
		return err
	}
	if missing := cfg.MemoryObjects - len(list.Items); missing > 0 {
		if _, _, err := createObjects(ctx, c, benchAccount, eventNamespace, "memory", missing, cfg.C, nil); err != nil {
			return err
		}
	}
	return waitReconciled(ctx, c, 10*time.Minute, &res.Memory.Objects)
}

// waitReconciled waits until the operator has reconciled every resource in the event
// namespace, and reports how many there are.
func waitReconciled(ctx context.Context, c client.Client, timeout time.Duration, count *int) error {
	var list v1alpha1.OfficialAccountSubscriptionList
	for deadline := time.Now().Add(timeout); ; time.Sleep(2 * time.Second) {
		if err := c.List(ctx, &list, client.InNamespace(eventNamespace)); err != nil {
			return err
		}
		reconciled := 0
		for _, s := range list.Items {
			if meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionReady) != nil {
				reconciled++
			}
		}
		if count != nil {
			*count = len(list.Items)
		}
		if reconciled == len(list.Items) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d resources reconciled after %s", reconciled, len(list.Items), timeout)
		}
	}
}

// manager is the real operator binary, run as users run it.
type manager struct {
	cmd        *exec.Cmd
	webhookURL string
}

// startManager builds the manager once and starts it, logging to <name>.log.
func startManager(ctx context.Context, workDir, kubeconfig, name string, extraArgs []string, logf func(string, ...any)) (*manager, error) {
	bin := filepath.Join(workDir, "manager")
	if _, err := os.Stat(bin); err != nil {
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd")
		build.Dir = testenv.RepoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building the manager: %v\n%s", err, out)
		}
	}
	port, err := testenv.FreeLoopbackPort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(workDir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// Production defaults but for the addresses and the namespace.
	args := append([]string{"--kubeconfig", kubeconfig, "--sdk-app-id", benchApp, "--event-namespace", eventNamespace,
		"--webhook-bind-address", "127.0.0.1:" + strconv.Itoa(port), "--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--allow-unsigned-callbacks"},
		extraArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &manager{cmd: cmd, webhookURL: fmt.Sprintf("http://127.0.0.1:%d/callback", port)}
	logf("manager started (pid %d, log %s)", cmd.Process.Pid, logPath)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(m.webhookURL); err == nil {
			resp.Body.Close()
			return m, nil
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, errors.New("the manager's webhook did not come up in 60 s; see " + logPath)
		}
	}
}

func (m *manager) stop() {
	_ = m.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
	}
}

// peakRSSMiB reads the manager's high-water mark of resident memory.
func (m *manager) peakRSSMiB() (float64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[0] == "VmHWM:" {
			kb, err := strconv.ParseFloat(fields[1], 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

func machine() string {
	cpu := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%d cores, %s", runtimeNumCPU(), cpu)
}
