// Command bench measures the operator against the API server's own ceiling, in one run:
// creates/s straight through a client, events/s through the webhook, events/s end to end
// to an HTTP sink, answer latency under steady load, and the manager's memory with many
// resources cached, and at rest with a backlog held. Every rate is also given as a ratio
// to the ceiling of the same run.
//
// Two sustained phases then run creates, status writes and retention's deletes together
// (delivered events kept -sustained-retention, then not kept), and a write-cost phase
// prices each write of an event's life on its own.
//
//	go run ./hack/bench [-n 3000] [-c 64] [-rate-fraction 0.5 | -rate 150] [-duration 30s]
//	    [-memory-objects 20000] [-held-objects 20000] [-held-rest 30s]
//	    [-sustained-fraction 0.2] [-sustained-duration 60s] [-sustained-retention 15s] [-out bench/results.json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func runtimeNumCPU() int { return runtime.NumCPU() }

func main() {
	cfg := config{}
	flag.IntVar(&cfg.N, "n", 3000, "Events per phase.")
	flag.IntVar(&cfg.C, "c", 64, "Concurrent workers and senders.")
	flag.Float64Var(&cfg.RateFraction, "rate-fraction", 0.5, "Steady load as a fraction of the measured ingest rate.")
	flag.Float64Var(&cfg.Rate, "rate", 0, "Steady load in callbacks per second, instead of -rate-fraction; to compare settings at one rate.")
	flag.DurationVar(&cfg.Duration, "duration", 30*time.Second, "Length of the steady load.")
	flag.IntVar(&cfg.MemoryObjects, "memory-objects", 20000, "Resources in the manager's cache for the memory figure.")
	flag.IntVar(&cfg.HeldObjects, "held-objects", 20000, "Held phase: events a suspended sink holds while the manager is at rest.")
	flag.DurationVar(&cfg.HeldRest, "held-rest", 30*time.Second, "Held phase: how long the manager's CPU at rest is measured.")
	flag.Float64Var(&cfg.SustainedFraction, "sustained-fraction", 0.2, "Sustained phase: open-loop rate as a fraction of the ceiling.")
	flag.DurationVar(&cfg.SustainedDuration, "sustained-duration", 60*time.Second, "Sustained phase: length of the load.")
	flag.DurationVar(&cfg.SustainedRetention, "sustained-retention", 15*time.Second, "Sustained phase: the manager's --delivered-retention.")
	flag.StringVar(&cfg.ProfileDir, "profile-dir", "", "Write CPU profiles of kube-apiserver and the manager over ingest, the start of end to end, the held backlog's rest and each sustained phase here.")
	flag.BoolVar(&cfg.ServiceAccount, "service-account", false, "Run the manager as the chart's ServiceAccount, under priority and fairness as in a cluster, instead of as an exempt admin.")
	flag.BoolVar(&cfg.FlowSchema, "flow-schema", false, "Apply hack/bench/testdata/flowschema.yaml (a priority level of its own for the webhook's creates); implies -service-account.")
	skip := flag.String("skip", "", "Phases to leave out, comma-separated: write-costs, memory, held, sustained.")
	out := flag.String("out", "bench/results.json", "Where to write the figures as JSON.")
	flag.Func("manager-arg", "An extra flag for the manager, e.g. --manager-arg=--max-concurrent-reconciles=16 (repeatable).",
		func(v string) error { cfg.ManagerArgs = append(cfg.ManagerArgs, v); return nil })
	flag.Parse()
	if flag.NArg() > 0 {
		fail(fmt.Errorf("unexpected arguments %q: every setting is a flag (-h lists them)", flag.Args()))
	}
	cfg.Skip = map[string]bool{}
	for _, phase := range strings.Split(*skip, ",") {
		switch phase {
		case "":
		case "write-costs", "memory", "held", "sustained":
			cfg.Skip[phase] = true
		default:
			fail(fmt.Errorf("-skip: unknown phase %q", phase))
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	work, err := os.MkdirTemp("", "officialaccount-bench-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(work)
	cfg.WorkDir = work

	res, err := run(ctx, cfg, func(format string, args ...any) { fmt.Fprintf(os.Stderr, ">> "+format+"\n", args...) })
	if err != nil {
		fail(err)
	}
	printTable(os.Stdout, res)
	printCPU(os.Stdout, res)
	printWriteCosts(os.Stdout, res.WriteCosts)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fail(err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		fail(err)
	}
	fmt.Printf("\nFigures written to %s\n", *out)
}

func printTable(w io.Writer, r *results) {
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	e := r.EndToEnd
	fmt.Fprintf(w, "Machine: %s; N=%d, C=%d; the manager as %s, flags %q; phases skipped %q\n\n",
		r.Machine, r.N, r.C, r.ManagerIdentity, r.ManagerArgs, r.Skipped)
	fmt.Fprintf(w, "| measure | result | ratio to ceiling | target |\n|---|---|---|---|\n")
	fmt.Fprintf(w, "| ceiling: creates straight through a client (best of %s /s) | %.0f /s | 1.00 | |\n",
		joinRates(r.CeilingRounds), r.CeilingPerSec)
	fmt.Fprintf(w, "| ingest: events stored through the webhook | %.0f /s (%d/%d OK) | %.2f | ≥ 0.85: %s |\n",
		r.Ingest.PerSecond, r.Ingest.OK, r.Ingest.Sent, r.IngestRatio, verdict(r.IngestRatio >= 0.85))
	fmt.Fprintf(w, "| ingest answer latency p50 / p95 / p99 / max | %.1f / %.1f / %.1f / %.1f ms | | |\n",
		r.Ingest.Latency.P50ms, r.Ingest.Latency.P95ms, r.Ingest.Latency.P99ms, r.Ingest.Latency.MaxMs)
	fmt.Fprintf(w, "| end to end: POST to Ready, delivered | %.0f /s (%.1f s for %d) | %.2f | ≥ 0.40: %s |\n",
		e.ReadyPerSecond, e.ReadySeconds, e.OK, r.EndToEndRatio, verdict(r.EndToEndRatio >= 0.40))
	fmt.Fprintf(w, "| end to end: answered OK / delivered / lost | %d / %d / %d | | 0 lost: %s |\n",
		e.OK, e.Delivered, e.Lost, verdict(e.Lost == 0))
	fmt.Fprintf(w, "| reference: create + status write per event, straight through a client | %.0f /s | %.2f | |\n",
		r.EndToEndReference, r.EndToEndReferenceRatio)
	fmt.Fprintf(w, "| steady load at %.0f /s: p50 / p99 / max | %.1f / %.1f / %.1f ms | | p99 ≤ 100 ms: %s |\n",
		r.SteadyRate, r.Steady.Latency.P50ms, r.Steady.Latency.P99ms, r.Steady.Latency.MaxMs, verdict(r.Steady.Latency.P99ms <= 100))
	fmt.Fprintf(w, "| steady load: answers over 1 s / not OK | %d / %d | | 0: %s |\n",
		r.Steady.OverOneS, r.Steady.Sent-r.Steady.OK, verdict(r.Steady.OverOneS == 0 && r.Steady.OK == r.Steady.Sent))
	fmt.Fprintf(w, "| reference: the same rate of creates + status writes straight through a client: p50 / p99 / max | %.1f / %.1f / %.1f ms | | |\n",
		r.SteadyReference.Latency.P50ms, r.SteadyReference.Latency.P99ms, r.SteadyReference.Latency.MaxMs)
	fmt.Fprintf(w, "| floor: the same rate of bare creates straight through a client: p50 / p99 / max | %.1f / %.1f / %.1f ms | | |\n",
		r.SteadyFloor.Latency.P50ms, r.SteadyFloor.Latency.P99ms, r.SteadyFloor.Latency.MaxMs)
	for _, u := range r.Sustained {
		fmt.Fprintf(w, "| %s: %.0f /s offered for %.0f s, --delivered-retention=%s: delivered | %.0f /s | %.2f | ≥ 0.30: %s |\n",
			u.Phase, u.Rate, u.Seconds, u.Retention, u.DeliveredPerSecond, u.Ratio, verdict(u.Ratio >= 0.30))
		fmt.Fprintf(w, "| %s: answered OK / delivered / lost | %d / %d / %d | | 0 lost: %s |\n",
			u.Phase, u.OK, u.Delivered, u.Lost, verdict(u.Lost == 0 && u.OK == u.Sent))
		fmt.Fprintf(w, "| %s: p50 / p99 / max, answers over 1 s | %.1f / %.1f / %.1f ms, %d | | |\n",
			u.Phase, u.Latency.P50ms, u.Latency.P99ms, u.Latency.MaxMs, u.OverOneS)
		fmt.Fprintf(w, "| %s: resources stored over time (s: count) | %s | | levels off: %s |\n", u.Phase, joinSamples(u.Stored), verdict(u.Levelled))
	}
	if r.Memory.Objects > 0 {
		fmt.Fprintf(w, "| manager peak RSS with %d resources cached | %.0f MiB | | ≤ 256 MiB: %s |\n",
			r.Memory.Objects, r.Memory.PeakRSSMB, verdict(r.Memory.PeakRSSMB <= 256))
	}
	if r.Held != nil {
		fmt.Fprintf(w, "| manager CPU at rest, %d events held by a suspended sink, %d cached (%.0f s) | %.3f cores | | |\n",
			r.Held.Events, r.Held.Cached, r.Held.Seconds, r.Held.ManagerCores)
	}
}

// printCPU shows where each throughput phase's CPU went, per event, and the ratio to the
// ceiling each phase could reach at that cost: on this machine, where every process
// shares the cores, and with the API server and etcd alone on them, as on a cluster whose
// control plane has its own machines.
func printCPU(w io.Writer, r *results) {
	ceiling, ok := r.CPU[phaseCeiling]
	if !ok {
		return
	}
	rates := map[string]float64{phaseCeiling: r.CeilingPerSec, phaseReference: r.EndToEndReference,
		phaseIngest: r.Ingest.PerSecond, phaseEndToEnd: r.EndToEnd.ReadyPerSecond}
	for _, u := range r.Sustained {
		rates[u.Phase] = u.DeliveredPerSecond
	}
	fmt.Fprintf(w, "\nCPU per event, by process (ms); busy cores of the %d over the phase:\n\n", runtimeNumCPU())
	fmt.Fprintf(w, "| phase | events/s | busy cores | %s | total | ratio bound: this machine | ratio bound: control plane alone |\n|---|---|---|%s---|---|---|\n",
		strings.Join(cpuRoles, " | "), strings.Repeat("---|", len(cpuRoles)))
	for _, phase := range cpuPhases {
		cost, ok := r.CPU[phase]
		if !ok {
			continue
		}
		perRole := make([]string, len(cpuRoles))
		for i, role := range cpuRoles {
			perRole[i] = fmt.Sprintf("%.2f", cost.MsPerEvent[role])
		}
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %s | %.2f | %.2f | %.2f |\n", phase, rates[phase], cost.BusyCores,
			strings.Join(perRole, " | "), cost.TotalMsEvent, cpuBound(ceiling, cost, runtimeNumCPU()), controlPlaneBound(ceiling, cost))
	}
}

// cpuBound is the most a phase's ratio to the ceiling can be while its CPU per event
// stays as measured: all the machine's cores over its CPU per event is its best rate, and
// the ceiling's rate is the cores it kept busy over its own CPU per event.
func cpuBound(ceiling, phase cpuCost, cores int) float64 {
	if phase.TotalMsEvent == 0 || ceiling.BusyCores == 0 {
		return 0
	}
	return float64(cores) / ceiling.BusyCores * ceiling.TotalMsEvent / phase.TotalMsEvent
}

// controlPlaneBound is the most a phase's ratio to the ceiling can be when the API server
// and etcd have cores to themselves and are the limit: the ceiling's control-plane CPU per
// event over the phase's.
func controlPlaneBound(ceiling, phase cpuCost) float64 {
	if phase.controlPlaneMs() == 0 {
		return 0
	}
	return ceiling.controlPlaneMs() / phase.controlPlaneMs()
}

func joinSamples(samples []storedSample) string {
	parts := make([]string, len(samples))
	for i, s := range samples {
		parts[i] = fmt.Sprintf("%.0f: %d", s.Seconds, s.Stored)
	}
	return strings.Join(parts, ", ")
}

func joinRates(rates []float64) string {
	parts := make([]string, len(rates))
	for i, r := range rates {
		parts[i] = fmt.Sprintf("%.0f", r)
	}
	return strings.Join(parts, ", ")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}
