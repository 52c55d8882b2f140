package delivery

import (
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// wakeTick is how often a paced wake looks whether its sink's lane has room.
const wakeTick = 20 * time.Millisecond

// WakePaced reconciles the events again no faster than the sink's lane takes their
// deliveries: limit of them at a time, the next ones once fewer than limit deliveries are
// running or queued in the lane. It is how a sink that resumes, is repaired, or whose
// circuit closes reaches its backlog: tens of thousands of reconciles at once would fill
// the work queue that new events for healthy sinks wait in, for deliveries the lane could
// not start anyway. A newer wake of the same sink replaces one under way: it lists the
// sink's events again.
func (l *Lanes) WakePaced(sink string, events []types.NamespacedName, limit int) {
	if len(events) == 0 {
		return
	}
	limit = max(limit, 1)
	l.mu.Lock()
	if l.wakes == nil {
		l.wakes = map[string]uint64{}
	}
	l.wakeGeneration++
	generation := l.wakeGeneration
	l.wakes[sink] = generation
	l.mu.Unlock()
	go func() {
		ticker := time.NewTicker(wakeTick)
		defer ticker.Stop()
		for len(events) > 0 {
			if !l.wakeCurrent(sink, generation) {
				return
			}
			if l.load(sink) < limit {
				n := min(limit, len(events))
				for _, key := range events[:n] {
					l.ReconcileAgain(key)
				}
				events = events[n:]
			}
			select {
			case <-ticker.C:
			case <-l.stopped:
				return
			}
		}
		l.mu.Lock()
		if l.wakes[sink] == generation {
			delete(l.wakes, sink)
		}
		l.mu.Unlock()
	}()
}

// wakeCurrent reports whether the wake of that generation is the sink's latest.
func (l *Lanes) wakeCurrent(sink string, generation uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.wakes[sink] == generation
}

// load is how many deliveries to the sink run or wait in its queue.
func (l *Lanes) load(sink string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	ln := l.lanes[sink]
	if ln == nil {
		return 0
	}
	return ln.running + len(ln.queue)
}
