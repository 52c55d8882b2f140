package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
	"github.com/chat-operators/officialaccount-operator/internal/backlog"
)

// backlogWriteTimeout bounds one write of the count.
const backlogWriteTimeout = 5 * time.Second

// BacklogPublisher counts, on the leader, the stored callbacks not yet complete and writes
// the count where every webhook replica reads it (package backlog), so that the webhook
// can stop storing at --max-pending-events. It counts from the cache, without copies,
// and writes every interval, even when the count is the same: a webhook forgets its own
// stores only once a count newer than them says they are included, so a count left
// unwritten while it stays the same would let the webhook's estimate grow by its rate of
// stores and answer 503 without cause. One ConfigMap update every 2 s is the price.
type BacklogPublisher struct {
	Cache     client.Reader // the manager's cache
	Client    client.Client // writes
	Namespace string
}

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;create;update

// NeedLeaderElection is true: the count is the leader's, whose cache holds every event.
func (p *BacklogPublisher) NeedLeaderElection() bool { return true }

// Start publishes until ctx ends.
func (p *BacklogPublisher) Start(ctx context.Context) error {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		// The time is read before the count, so that every store the count includes is
		// older than CountedAt.
		now := time.Now()
		pending, err := p.countPending(ctx)
		if err != nil {
			logf.FromContext(ctx).Error(err, "counting pending events")
			return
		}
		if err := p.write(ctx, backlog.Count{Pending: pending, CountedAt: now}); err != nil {
			logf.FromContext(ctx).Error(err, "writing the count of pending events", "configMap", backlog.ConfigMapName)
		}
	}, backlog.Interval)
	return nil
}

func (p *BacklogPublisher) countPending(ctx context.Context) (int, error) {
	var list v1alpha1.OfficialAccountSubscriptionList
	if err := p.Cache.List(ctx, &list, client.InNamespace(p.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	pending := 0
	for i := range list.Items {
		// Snapshot parts have a budget of their own (--max-pending-snapshot-parts): a few
		// large accounts must not push callbacks, which Tencent never resends, into 503.
		// Nor do replays: they resend events stored long ago, and must never cost a callback.
		if item := &list.Items[i]; item.Status.CompletionTime == nil && item.Spec.Action != v1alpha1.ActionSnapshot &&
			!delivery.OnlyReplaysPending(&item.Status) {
			pending++
		}
	}
	return pending, nil
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
