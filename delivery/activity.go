package delivery

import (
	"sync"
	"time"
)

// SinkActivity is what the deliveries to each sink last did: when one last succeeded, and
// the last error. The sink reconciler reports it in the sink's status, so that nobody has
// to read events to learn whether a sink is working. It is kept in memory: the status
// carries it across leaders. The zero value is ready to use.
type SinkActivity struct {
	mu     sync.Mutex
	bySink map[string]Activity // by namespace/name
}

// Activity is one sink's last success and last error.
type Activity struct {
	LastDelivery  time.Time
	LastError     string
	LastErrorTime time.Time
}

// record notes an attempt's outcome for the sink.
func (a *SinkActivity) record(sink string, at time.Time, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bySink == nil {
		a.bySink = map[string]Activity{}
	}
	cur := a.bySink[sink]
	if err == nil {
		if at.After(cur.LastDelivery) {
			cur.LastDelivery = at
		}
	} else if !at.Before(cur.LastErrorTime) {
		cur.LastError, cur.LastErrorTime = truncate(err.Error()), at
	}
	a.bySink[sink] = cur
}

// Of returns the sink's activity.
func (a *SinkActivity) Of(sink string) Activity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bySink[sink]
}

// Forget drops a deleted sink's activity.
func (a *SinkActivity) Forget(sink string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.bySink, sink)
}
