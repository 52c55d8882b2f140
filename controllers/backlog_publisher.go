package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/backlog"
)

// backlogWriteTimeout bounds one write of the count.
const backlogWriteTimeout = 5 * time.Second

// BacklogPublisher counts, on the leader, the stored callbacks not yet complete and writes
// the count where every webhook replica reads it (package backlog), so that the webhook
// can stop storing at --max-pending-events. The count follows the events' informer (see
// pendingCount). It is written every interval, even when it is the same: a webhook
// forgets its own stores only once a count newer than them says they are included, so a
// count left unwritten while it stays the same would let the webhook's estimate grow by
// its rate of stores and answer 503 without cause. One ConfigMap update every 2 s is the
// price.
type BacklogPublisher struct {
	Cache     cache.Informers // the manager's cache, whose informer of events is counted
	Client    client.Client   // writes
	Namespace string
}

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;create;update

// NeedLeaderElection is true: the count is the leader's, whose cache holds every event.
func (p *BacklogPublisher) NeedLeaderElection() bool { return true }

// Start publishes until ctx ends, from the moment the count includes every cached event.
func (p *BacklogPublisher) Start(ctx context.Context) error {
	informer, err := p.Cache.GetInformer(ctx, &v1alpha1.OfficialAccountSubscription{})
	if ctx.Err() != nil {
		return nil // stopped while the informer was syncing
	}
	if err != nil {
		return fmt.Errorf("the informer of events: %w", err)
	}
	count := &pendingCount{namespace: p.Namespace}
	registration, err := informer.AddEventHandler(count)
	if err != nil {
		return fmt.Errorf("counting pending events: %w", err)
	}
	defer func() { _ = informer.RemoveEventHandler(registration) }()
	if !toolscache.WaitForCacheSync(ctx.Done(), registration.HasSynced) {
		return nil // ended before the informer had listed the events
	}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		// The time is read before the count, so that every store the count includes is
		// older than CountedAt.
		now := time.Now()
		if err := p.write(ctx, backlog.Count{Pending: count.Pending(), CountedAt: now}); err != nil {
			logf.FromContext(ctx).Error(err, "writing the count of pending events", "configMap", backlog.ConfigMapName)
		}
	}, backlog.Interval)
	return nil
}

func (p *BacklogPublisher) write(ctx context.Context, count backlog.Count) error {
	ctx, cancel := context.WithTimeout(ctx, backlogWriteTimeout)
	defer cancel()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: backlog.ConfigMapName}}
	count.Into(cm)
	err := p.Client.Update(ctx, cm)
	if apierrors.IsNotFound(err) {
		return p.Client.Create(ctx, cm)
	}
	return err
}
