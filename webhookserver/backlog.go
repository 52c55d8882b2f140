package webhookserver

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/internal/backlog"
)

// backlogReadTimeout bounds one read of the leader's count.
const backlogReadTimeout = 2 * time.Second

// backlogGate stops storing when --max-pending-events stored events are not yet complete,
// so that a backlog that grows for a day (a sink down) cannot fill etcd's quota and stop
// the whole cluster's API. The count is the leader's (package backlog), read every few
// seconds; what this replica stored since the leader counted is added to it, so that the
// gate closes at the limit however fast callbacks come, without a LIST per request.
type backlogGate struct {
	max int // 0: no limit

	mu          sync.Mutex
	counted     backlog.Count
	storedSince []time.Time // this replica's stores after counted.CountedAt
}

// admit answers 503 while the backlog is at the limit.
func (g *backlogGate) admit() *requestError {
	if g.max <= 0 {
		return nil
	}
	g.mu.Lock()
	pending := g.counted.Pending + len(g.storedSince)
	g.mu.Unlock()
	pendingEventsGauge.Set(float64(pending))
	if pending < g.max {
		return nil
	}
	return &requestError{status: http.StatusServiceUnavailable, result: "backlog_full",
		info: fmt.Sprintf("%d stored events are not yet delivered, the limit of --max-pending-events %d: nothing more is stored until deliveries catch up", pending, g.max)}
}

// stored records a resource this replica created.
func (g *backlogGate) stored(at time.Time) {
	if g.max <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.storedSince = append(g.storedSince, at)
}

// cacheLag is how long before the leader counted a store may still have been missing from
// its cache: such stores are counted once more rather than not at all, so that the
// estimate errs on the side of the limit.
const cacheLag = time.Second

// update takes a new count of the leader's and forgets the stores it surely includes.
func (g *backlogGate) update(c backlog.Count) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !c.CountedAt.After(g.counted.CountedAt) {
		return
	}
	g.counted = c
	kept := g.storedSince[:0]
	for _, at := range g.storedSince {
		if at.After(c.CountedAt.Add(-cacheLag)) {
			kept = append(kept, at)
		}
	}
	g.storedSince = kept
}

// follow reads the leader's count every backlog.Interval until ctx ends.
func (g *backlogGate) follow(ctx context.Context, c client.Client, namespace string, log func(error)) {
	if g.max <= 0 {
		return
	}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, backlogReadTimeout)
		defer cancel()
		var cm corev1.ConfigMap
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: backlog.ConfigMapName}, &cm)
		if apierrors.IsNotFound(err) {
			return // no leader has counted yet: this replica's own stores are the estimate
		}
		var count backlog.Count
		if err == nil {
			count, err = backlog.From(&cm)
		}
		if err != nil {
			log(err)
			return
		}
		g.update(count)
	}, backlog.Interval)
}
