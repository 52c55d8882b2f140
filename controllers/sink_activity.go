package controllers

import (
	"sync"
	"time"
)

// SinkActivity is what the deliveries to each sink last did: when one last succeeded, and
// the last error. The sink reconciler reports it in the sink's status, so that nobody has
// to read events to learn whether a sink is working. It is kept in memory: the status
// carries it across leaders.
type SinkActivity struct {
	mu     sync.Mutex
	bySink map[string]sinkActivity // by namespace/name
}

type sinkActivity struct {
	lastDelivery  time.Time
	lastError     string
	lastErrorTime time.Time
}

// record notes an attempt's outcome for the sink.
func (a *SinkActivity) record(sink string, at time.Time, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bySink == nil {
		a.bySink = map[string]sinkActivity{}
	}
	cur := a.bySink[sink]
	if err == nil {
		cur.lastDelivery = maxTime(cur.lastDelivery, at)
	} else if !at.Before(cur.lastErrorTime) {
		cur.lastError, cur.lastErrorTime = truncate(err.Error()), at
	}
	a.bySink[sink] = cur
}

func (a *SinkActivity) of(sink string) sinkActivity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bySink[sink]
}

func (a *SinkActivity) forget(sink string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.bySink, sink)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
