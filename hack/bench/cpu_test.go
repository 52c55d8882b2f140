package main

import (
	"math"
	"os"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       procStat
		wantErr    bool
	}{
		{name: "plain", line: "4242 (etcd) S 17 4242 17 0 -1 4194560 1 0 0 0 250 75 0 0 20 0 12 0 1 1 1",
			want: procStat{comm: "etcd", ppid: 17, cpuTicks: 325}},
		{name: "spaces and parentheses in the name", line: "7 (a (b) c) R 1 7 1 0 -1 0 0 0 0 0 3 4 0 0 20 0",
			want: procStat{comm: "a (b) c", ppid: 1, cpuTicks: 7}},
		{name: "no name", line: "7 R 1 7", wantErr: true},
		{name: "cut short", line: "7 (x) R 1 7 1 0", wantErr: true},
		{name: "not a number", line: "7 (x) R one 7 1 0 -1 0 0 0 0 0 3 4 0 0", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat(tc.line)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseMachineCPU(t *testing.T) {
	for _, tc := range []struct {
		name, stat  string
		busy, total float64
		wantErr     bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{name: "idle and iowait are not busy", stat: "cpu  100 5 50 800 40 3 2 0 30 0\ncpu0 1 2 3\n", busy: 160, total: 1000},
		{name: "no cpu line", stat: "intr 1 2 3\n", wantErr: true},
		{name: "not a number", stat: "cpu 1 x 3 4 5 6\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			busy, total, err := parseMachineCPU(tc.stat)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (busy != tc.busy || total != tc.total) {
				t.Fatalf("busy %v of %v, want %v of %v", busy, total, tc.busy, tc.total)
			}
		})
	}
}

func TestCPUBound(t *testing.T) {
	for _, tc := range []struct {
		name           string
		ceiling, phase cpuCost
		cores          int
		want           float64
	}{
		{name: "saturated ceiling, phase three times as costly", cores: 2,
			ceiling: cpuCost{BusyCores: 2, TotalMsEvent: 3}, phase: cpuCost{TotalMsEvent: 9}, want: 1.0 / 3},
		{name: "a ceiling with idle cores leaves room", cores: 2,
			ceiling: cpuCost{BusyCores: 1, TotalMsEvent: 3}, phase: cpuCost{TotalMsEvent: 9}, want: 2.0 / 3},
		{name: "nothing measured", cores: 2, ceiling: cpuCost{BusyCores: 2, TotalMsEvent: 3}, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cpuBound(tc.ceiling, tc.phase, tc.cores); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestControlPlaneBound(t *testing.T) {
	ceiling := cpuCost{MsPerEvent: map[string]float64{roleAPIServer: 2.5, roleEtcd: 0.5, roleLoad: 1}}
	phase := cpuCost{MsPerEvent: map[string]float64{roleAPIServer: 5, roleEtcd: 1, roleManager: 3, roleLoad: 1}}
	if got := controlPlaneBound(ceiling, phase); math.Abs(got-0.5) > 1e-9 {
		t.Fatalf("got %v, want 0.5: the manager and the load generator do not count", got)
	}
	if got := controlPlaneBound(ceiling, cpuCost{}); got != 0 {
		t.Fatalf("nothing measured: got %v", got)
	}
}

// The meter finds this process, and its CPU time grows as it works.
func TestCPUMeterCountsThisProcess(t *testing.T) {
	m := &cpuMeter{pids: map[string]int{roleLoad: os.Getpid()}}
	start := m.sample()
	for deadline := start.seconds[roleLoad] + 0.05; m.sample().seconds[roleLoad] < deadline; {
		// reading /proc until 50 ms of CPU time have gone by is the work
	}
	cost := m.costSince(start, 10)
	// 50 ms over 10 events is 5 ms each, give or take the float subtraction of two tick counts.
	if cost.MsPerEvent[roleLoad] < 5-1e-9 || cost.TotalMsEvent != cost.MsPerEvent[roleLoad] || cost.BusyCores <= 0 {
		t.Fatalf("cost %+v", cost)
	}
}
