package operator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Leadership is client-go's leader election run around a term, rather than
// controller-runtime's manager option, for two reasons. The manager's election exits the
// process when the lease is lost, taking the webhook with it; and it starts the informer
// caches on every replica, so a standby would cache the whole backlog. Here a standby
// runs no manager at all, and a replica that loses the lease ends its term, keeps
// serving webhooks, and campaigns again.

// leaderElectionID names the Lease.
const leaderElectionID = "officialaccount-operator.chat-operators.dev"

// LeaderElectionTimes are the lease's timings; the defaults are controller-runtime's.
type LeaderElectionTimes struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// termRestartDelay is the pause before a term that ended on its own (the API server was
// unreachable when it started) is tried again.
const termRestartDelay = 5 * time.Second

// campaign runs term each time this replica is elected, until ctx ends. A term ends when
// ctx ends or the lease is lost.
//
// The lease is released only on an orderly stop, once the term has returned, so that the
// next leader never runs alongside this one's last reconciles. Not by client-go's
// ReleaseOnCancel: when a renewal fails, client-go releases the lease before it cancels
// the leading context, and a standby could take over while this term still delivers. A
// lost lease is not released at all: it runs out a lease duration after the last renewal,
// and the term, cancelled at once with errLeaseLost, cancels its deliveries at once.
func campaign(ctx context.Context, restConfig *rest.Config, namespace string, times LeaderElectionTimes,
	term func(context.Context) error) error {
	lock, err := newLeaseLock(restConfig, namespace, times.RenewDeadline)
	if err != nil {
		return err
	}
	log := ctrl.Log.WithName("leader-election").WithValues("lease", namespace+"/"+leaderElectionID, "identity", lock.Identity())
	for ctx.Err() == nil {
		elected := make(chan context.Context, 1)
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			Name:            leaderElectionID,
			LeaseDuration:   times.LeaseDuration,
			RenewDeadline:   times.RenewDeadline,
			RetryPeriod:     times.RetryPeriod,
			ReleaseOnCancel: false, // see above: releaseLease after an orderly stop
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(leading context.Context) { elected <- leading },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		// The election has a context of its own: ending it releases the lease, which must
		// wait for the term to end, not for ctx.
		electionCtx, endElection := context.WithCancel(context.WithoutCancel(ctx))
		electionDone := make(chan struct{})
		go func() { defer close(electionDone); elector.Run(electionCtx) }()
		log.Info("campaigning for the lease; serving webhooks meanwhile")

		held := false
		select {
		case <-ctx.Done():
		case leading := <-elected:
			log.Info("elected: starting the reconcilers")
			runTermUntil(ctx, leading, term)
			held = leading.Err() == nil // not lost: this replica still holds the lease
		}
		endElection()
		<-electionDone
		if held {
			log.Info("the reconcilers stopped; releasing the lease, still serving webhooks")
			releaseLease(lock, times.RenewDeadline, log)
		}
		pause(ctx, termRestartDelay)
	}
	return nil
}

// errLeaseLost is the cause a term's context ends with when the lease was lost: its
// deliveries are cancelled at once rather than given the shutdown timeout.
var errLeaseLost = errors.New("the leader election lease was lost")

// runTermUntil runs term until ctx ends or the lease is lost (leading ends).
func runTermUntil(ctx, leading context.Context, term func(context.Context) error) {
	log := ctrl.Log.WithName("leader-election")
	termCtx, endTerm := context.WithCancelCause(context.WithoutCancel(leading))
	defer endTerm(nil)
	stop := context.AfterFunc(ctx, func() { endTerm(context.Canceled) })
	defer stop()
	lost := context.AfterFunc(leading, func() {
		if ctx.Err() == nil {
			log.Info(LostLeaseMessage)
			endTerm(errLeaseLost)
		}
	})
	defer lost()
	if err := term(termCtx); err != nil {
		log.Error(err, "the reconcilers stopped with an error")
	}
}

// LostLeaseMessage is logged when the lease is lost while the process goes on; the
// fault tests look for it in the process's log.
const LostLeaseMessage = "lost the lease: cancelling the deliveries and stopping the reconcilers; this replica goes on serving webhooks"

// releaseLease gives up a lease this replica still holds, as client-go's own release does
// (no holder, a lease of one second), so that a standby takes over at once.
//
// A renewal the ended election cancelled may still land on the API server after the
// release read the lease; the release then conflicts, and reads it again rather than
// leaving a standby to wait out the lease.
func releaseLease(lock resourcelock.Interface, timeout time.Duration, log logr.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		record, _, err := lock.Get(ctx)
		if apierrors.IsNotFound(err) || err == nil && record.HolderIdentity != lock.Identity() {
			return nil // gone, or held by another: nothing of ours to release
		}
		if err != nil {
			return err
		}
		now := metav1.NewTime(time.Now())
		return lock.Update(ctx, resourcelock.LeaderElectionRecord{LeaderTransitions: record.LeaderTransitions,
			LeaseDurationSeconds: 1, RenewTime: now, AcquireTime: now})
	})
	if err != nil {
		log.Error(err, "releasing the lease; a standby takes over once it runs out")
	}
}

// newLeaseLock is a Lease lock with a unique identity, whose client times out within the
// renew deadline so that one hung request cannot cost the lease.
func newLeaseLock(restConfig *rest.Config, namespace string, renewDeadline time.Duration) (resourcelock.Interface, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, err
	}
	cfg := rest.AddUserAgent(rest.CopyConfig(restConfig), "leader-election")
	cfg.Timeout = max(renewDeadline/2, time.Second)
	coordination, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: leaderElectionID},
		Client:     coordination,
		LockConfig: resourcelock.ResourceLockConfig{Identity: host + "_" + string(uuid.NewUUID())},
	}, nil
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
