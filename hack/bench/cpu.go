package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicksPerSecond is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicksPerSecond = 100

// The processes whose CPU time each phase accounts for.
const (
	roleAPIServer = "kube-apiserver"
	roleEtcd      = "etcd"
	roleManager   = "manager"
	roleLoad      = "load generator" // this process: the clients, the senders and the sink
)

var cpuRoles = []string{roleAPIServer, roleEtcd, roleManager, roleLoad}

// cpuCost is where a phase's CPU time went, per event. On a saturated machine two phases'
// rates stand in the inverse ratio of their total CPU per event, which is how the table
// shows what bounds a ratio to the ceiling.
type cpuCost struct {
	Events       int                `json:"events"`
	BusyCores    float64            `json:"busyCores"` // the whole machine's, over the phase
	MsPerEvent   map[string]float64 `json:"cpuMsPerEvent"`
	TotalMsEvent float64            `json:"totalCpuMsPerEvent"`
}

func (c cpuCost) controlPlaneMs() float64 {
	return c.MsPerEvent[roleAPIServer] + c.MsPerEvent[roleEtcd]
}

// cpuMeter samples the CPU time of the control plane, the manager and this process.
type cpuMeter struct {
	pids map[string]int
}

type cpuSample struct {
	seconds          map[string]float64
	busyTicks, ticks float64 // machine-wide, from /proc/stat
}

// newCPUMeter finds the control plane among this process's children: envtest starts it.
func newCPUMeter() (*cpuMeter, error) {
	m := &cpuMeter{pids: map[string]int{roleLoad: os.Getpid()}}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the process has gone
		}
		st, err := parseProcStat(string(b))
		if err != nil || st.ppid != os.Getpid() {
			continue
		}
		if st.comm == roleAPIServer || st.comm == roleEtcd {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			m.pids[st.comm] = pid
		}
	}
	if m.pids[roleAPIServer] == 0 || m.pids[roleEtcd] == 0 {
		return nil, errors.New("kube-apiserver and etcd are not children of this process")
	}
	return m, nil
}

func (m *cpuMeter) sample() cpuSample {
	s := cpuSample{seconds: map[string]float64{}}
	for role, pid := range m.pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if st, err := parseProcStat(string(b)); err == nil {
				s.seconds[role] = st.cpuTicks / clockTicksPerSecond
			}
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		s.busyTicks, s.ticks, _ = parseMachineCPU(string(b))
	}
	return s
}

// costSince is the CPU each process spent since start, per event, and how busy the
// machine was meanwhile.
func (m *cpuMeter) costSince(start cpuSample, events int) cpuCost {
	end := m.sample()
	c := cpuCost{Events: events, MsPerEvent: map[string]float64{}}
	if events == 0 {
		return c
	}
	for _, role := range cpuRoles {
		if _, ok := m.pids[role]; !ok {
			continue
		}
		ms := (end.seconds[role] - start.seconds[role]) * 1000 / float64(events)
		c.MsPerEvent[role] = ms
		c.TotalMsEvent += ms
	}
	if ticks := end.ticks - start.ticks; ticks > 0 {
		c.BusyCores = (end.busyTicks - start.busyTicks) / ticks * float64(runtimeNumCPU())
	}
	return c
}

type procStat struct {
	comm     string
	ppid     int
	cpuTicks float64 // utime + stime
}

// parseProcStat reads /proc/<pid>/stat. The command name is in parentheses and may hold
// spaces and parentheses itself, so the fields are counted from the last ')'.
func parseProcStat(line string) (procStat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("no command name in %q", line)
	}
	fields := strings.Fields(line[end+1:])
	// fields[0] is the state (field 3); ppid is field 4, utime 14, stime 15.
	if len(fields) < 13 {
		return procStat{}, fmt.Errorf("too few fields in %q", line)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return procStat{}, err
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return procStat{}, err
	}
	return procStat{comm: line[open+1 : end], ppid: ppid, cpuTicks: utime + stime}, nil
}

// parseMachineCPU reads the first line of /proc/stat: the ticks the machine was busy and
// all its ticks (idle and iowait count as not busy).
func parseMachineCPU(procStat string) (busy, total float64, err error) {
	line, _, _ := strings.Cut(procStat, "\n")
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("no cpu line in /proc/stat: %q", line)
	}
	for i, f := range fields[1:] {
		if i >= 8 { // guest times are already counted in user time
			break
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return 0, 0, err
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}
