package main

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// The held phase: the manager at rest while a suspended sink holds many events, as on the
// day a sink is down for hours. Nothing arrives and nothing is delivered, so what the
// manager spends is what the backlog itself costs it, which should not grow with the
// backlog.

// heldAccount is the Official Account of the held events; the sink holding them names it
// alone.
const heldAccount = "@TOA#_bench_held"

// heldResult is the manager's CPU at rest with Events held and Cached events in its cache
// (the held ones and those earlier phases left).
type heldResult struct {
	Events       int     `json:"events"`
	Cached       int     `json:"cached"`
	Seconds      float64 `json:"seconds"`
	ManagerCores float64 `json:"managerCores"`
}

// heldBacklog stores n events for a suspended sink, waits until the manager has
// reconciled them all, and measures its CPU over rest (and profiles it, when profiles are
// asked for). The sink is deleted at the end; the events stay, as the memory phase's do,
// until the sustained phases empty the namespace.
func heldBacklog(ctx context.Context, c client.Client, meter *cpuMeter, prof *profiler, n, workers int, rest time.Duration,
	logf func(string, ...any)) (heldResult, error) {
	var res heldResult
	sink := &v1alpha1.SubscriptionSink{
		ObjectMeta: metav1.ObjectMeta{Name: "held", Namespace: eventNamespace},
		Spec: v1alpha1.SubscriptionSinkSpec{OfficialAccounts: []string{heldAccount}, Suspend: true,
			// Never called: the sink is suspended.
			HTTP: &v1alpha1.HTTPDestination{URL: "http://127.0.0.1:9/held"}},
	}
	if err := c.Create(ctx, sink); err != nil {
		return res, err
	}
	defer func() { _ = c.Delete(context.WithoutCancel(ctx), sink) }()

	if _, _, err := createObjects(ctx, c, heldAccount, eventNamespace, "held", n, workers, nil); err != nil {
		return res, err
	}
	if err := waitReconciled(ctx, c, 10*time.Minute, &res.Cached); err != nil {
		return res, err
	}
	var held v1alpha1.OfficialAccountSubscriptionList
	if err := c.List(ctx, &held, client.InNamespace(eventNamespace),
		client.MatchingLabels{v1alpha1.LabelOfficialAccountHash: v1alpha1.OfficialAccountHash(heldAccount)}); err != nil {
		return res, err
	}
	for _, sub := range held.Items {
		if meta.FindStatusCondition(sub.Status.Conditions, v1alpha1.ConditionReady) != nil && sub.Status.CompletionTime == nil {
			res.Events++ // reconciled, and held
		}
	}

	before := meter.sample()
	start := time.Now()
	profiled := prof.profile(ctx, "held", max(int(rest.Seconds()), 1), logf)
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(rest):
	}
	after := meter.sample()
	res.Seconds = time.Since(start).Seconds() // the CPU's interval, not the profile's wait
	profiled()
	res.ManagerCores = (after.seconds[roleManager] - before.seconds[roleManager]) / res.Seconds
	return res, nil
}
