// Package backlog is how the leader tells every webhook replica how many stored events
// are not yet complete: a ConfigMap it writes every few seconds, counted as its informer
// of events reports them, which the webhooks read every few seconds. The webhooks hold
// no cache of events (a standby's memory must not grow with the backlog), and a LIST per
// callback would cost the API server more than the create it guards.
package backlog

import (
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// ConfigMapName is the ConfigMap, in the event namespace, that holds the count.
const ConfigMapName = "officialaccount-operator-backlog"

// Interval is how often the leader writes the count and the webhooks read it.
const Interval = 2 * time.Second

const (
	keyPending   = "pending"
	keyCountedAt = "countedAt"
)

// Count is the number of stored events not yet complete, as the leader's informer had
// reported them by CountedAt (a moment behind the API server, as any cache is).
type Count struct {
	Pending   int
	CountedAt time.Time
}

// Into writes c into cm's data.
func (c Count) Into(cm *corev1.ConfigMap) {
	cm.Data = map[string]string{
		keyPending:   strconv.Itoa(c.Pending),
		keyCountedAt: c.CountedAt.UTC().Format(time.RFC3339Nano),
	}
}

// From reads the count from cm.
func From(cm *corev1.ConfigMap) (Count, error) {
	pending, err := strconv.Atoi(cm.Data[keyPending])
	if err != nil || pending < 0 {
		return Count{}, fmt.Errorf("ConfigMap %s: %q is no count of pending events", cm.Name, cm.Data[keyPending])
	}
	at, err := time.Parse(time.RFC3339Nano, cm.Data[keyCountedAt])
	if err != nil {
		return Count{}, fmt.Errorf("ConfigMap %s: %q is no time", cm.Name, cm.Data[keyCountedAt])
	}
	return Count{Pending: pending, CountedAt: at}, nil
}
