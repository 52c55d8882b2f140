package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// A tiny run of the whole benchmark, so that `make test` keeps it working. It asserts
// what must hold at any size (nothing lost, every figure measured), never a speed.
func TestBenchSmoke(t *testing.T) {
	cfg := config{N: 40, C: 4, RateFraction: 0.5, Duration: 2 * time.Second, MemoryObjects: 150, WorkDir: t.TempDir(),
		HeldObjects: 100, HeldRest: time.Second,
		SustainedFraction: 0.05, SustainedDuration: 6 * time.Second, SustainedRetention: 2 * time.Second}
	res, err := run(context.Background(), cfg, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if res.CeilingPerSec <= 0 || res.Ingest.OK != cfg.N || res.EndToEnd.OK != cfg.N {
		t.Fatalf("ceiling %.0f/s, ingest %d OK, end to end %d OK of %d", res.CeilingPerSec, res.Ingest.OK, res.EndToEnd.OK, cfg.N)
	}
	if res.EndToEnd.Lost != 0 || res.EndToEnd.Delivered != cfg.N {
		t.Fatalf("answered OK %d, delivered %d", res.EndToEnd.OK, res.EndToEnd.Delivered)
	}
	if !slices.ContainsFunc(res.EndToEnd.RequestsPerEvent, func(r string) bool {
		return strings.HasPrefix(r, "POST officialaccountsubscriptions: ")
	}) {
		t.Fatalf("the end-to-end requests per event lack the creates: %v", res.EndToEnd.RequestsPerEvent)
	}
	if res.Steady.Sent == 0 || res.Steady.OK != res.Steady.Sent {
		t.Fatalf("steady load: %d of %d OK", res.Steady.OK, res.Steady.Sent)
	}
	if len(res.CeilingRounds) != 2 || res.EndToEndReference <= 0 {
		t.Fatalf("ceiling rounds %v, end-to-end reference %.0f/s", res.CeilingRounds, res.EndToEndReference)
	}
	for name, ref := range map[string]loadResult{"floor": res.SteadyFloor, "reference": res.SteadyReference} {
		if ref.Sent == 0 || ref.OK != ref.Sent {
			t.Fatalf("steady %s: %d of %d created", name, ref.OK, ref.Sent)
		}
	}
	// CPU time comes in 10 ms ticks, too coarse to expect every process busy in every tiny
	// phase; summed over the phases each must show.
	busy := map[string]float64{}
	for _, phase := range cpuPhases {
		want := cfg.N
		for _, u := range res.Sustained {
			if u.Phase == phase {
				want = u.OK
			}
		}
		cost, ok := res.CPU[phase]
		if !ok || cost.Events != want || want == 0 {
			t.Fatalf("%s: CPU accounted for %d events, want %d", phase, cost.Events, want)
		}
		for role, ms := range cost.MsPerEvent {
			busy[role] += ms
		}
	}
	if busy[roleAPIServer] <= 0 || busy[roleManager] <= 0 {
		t.Fatalf("CPU per event summed over the phases: %v", busy)
	}
	if res.Memory.Objects < cfg.MemoryObjects || res.Memory.PeakRSSMB <= 0 {
		t.Fatalf("memory phase: %d objects, %.0f MiB", res.Memory.Objects, res.Memory.PeakRSSMB)
	}
	// Every held event was reconciled and still held when the rest began.
	if res.Held == nil || res.Held.Events != cfg.HeldObjects || res.Held.Cached < cfg.HeldObjects+cfg.MemoryObjects || res.Held.ManagerCores < 0 {
		t.Fatalf("held phase: %+v", res.Held)
	}
	if len(res.Sustained) != 2 {
		t.Fatalf("sustained phases: %+v", res.Sustained)
	}
	for _, u := range res.Sustained {
		if u.Sent == 0 || u.OK != u.Sent || u.Lost != 0 || u.Delivered != u.OK || len(u.Stored) < 2 {
			t.Fatalf("%s: %d sent, %d OK, %d delivered, %d lost, stored %v", u.Phase, u.Sent, u.OK, u.Delivered, u.Lost, u.Stored)
		}
		// Every event's life ends with retention's delete within the phase.
		if !slices.ContainsFunc(u.RequestsPerEvent, func(r string) bool { return strings.HasPrefix(r, "DELETE officialaccountsubscriptions: ") }) {
			t.Fatalf("%s: the requests per event lack retention's deletes: %v", u.Phase, u.RequestsPerEvent)
		}
	}
	for _, v := range crdVariants {
		for _, kind := range writeKinds {
			if _, measured := res.WriteCosts[v.Name][kind]; !measured && (!sameForEveryVariant(kind) || v.group == "") {
				t.Fatalf("write costs: no figure for %s, %s: %v", v.Name, kind, res.WriteCosts)
			}
		}
	}
	var table bytes.Buffer
	printTable(&table, res)
	printCPU(&table, res)
	printWriteCosts(&table, res.WriteCosts)
	if !strings.Contains(table.String(), "| ingest: events stored through the webhook |") ||
		!strings.Contains(table.String(), "| end to end | ") || !strings.Contains(table.String(), "| "+writeStatusMerge+" | ") ||
		!strings.Contains(table.String(), "| "+phaseSustainedNotKept+": answered OK / delivered / lost |") {
		t.Fatalf("table:\n%s", table.String())
	}
}

// The priority-and-fairness variant: the manager runs as the chart's ServiceAccount and the
// candidate FlowSchema takes every one of the webhook's creates; the phases it is not
// compared on are left out.
func TestBenchFlowSchemaSmoke(t *testing.T) {
	cfg := config{N: 40, C: 4, RateFraction: 0.5, Duration: 2 * time.Second, WorkDir: t.TempDir(), FlowSchema: true,
		Skip: map[string]bool{"write-costs": true, "memory": true, "sustained": true}}
	res, err := run(context.Background(), cfg, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ingest.OK != cfg.N || res.EndToEnd.Delivered != cfg.N || res.Steady.OK != res.Steady.Sent {
		t.Fatalf("ingest %d OK, end to end %d delivered, steady %d of %d OK", res.Ingest.OK, res.EndToEnd.Delivered, res.Steady.OK, res.Steady.Sent)
	}
	if res.WebhookLevelDispatched < 1 {
		t.Fatalf("requests dispatched at %s per ingested event: %.2f, want every create", webhookPriorityLevel, res.WebhookLevelDispatched)
	}
	if len(res.WriteCosts) != 0 || res.Memory.Objects != 0 || len(res.Sustained) != 0 {
		t.Fatalf("skipped phases ran: %d write costs, %d objects, %d sustained", len(res.WriteCosts), res.Memory.Objects, len(res.Sustained))
	}
}

func TestLevelled(t *testing.T) {
	at := func(counts ...int) []storedSample {
		s := make([]storedSample, len(counts))
		for i, n := range counts {
			s[i] = storedSample{Seconds: float64(5 * i), Stored: n}
		}
		return s
	}
	tests := []struct {
		name    string
		samples []storedSample
		rate    float64
		want    bool
	}{
		{"flat after the warm-up", at(0, 700, 1400, 2100, 2200, 2150, 2250), 140, true},
		{"growing all along", at(0, 700, 1400, 2100, 2800, 3500, 4200), 140, false},
		{"a few in flight, moving", at(0, 8, 4, 11, 40, 9, 62), 149, true},
		{"one sample", at(5), 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := levelled(tt.samples, tt.rate); got != tt.want {
				t.Fatalf("levelled(%v) = %v, want %v", tt.samples, got, tt.want)
			}
		})
	}
}
