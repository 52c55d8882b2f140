package resync

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/tencent"
)

// run is one reconcile's resync of the accounts that are due.
type run struct {
	*Reconciler
	rs       *v1alpha1.OfficialAccountResync
	accounts []v1alpha1.AccountResync // the status's entries in spec order, updated as it goes
	// interrupted: ctx ended before every due account was tried.
	interrupted bool
}

// resync lists and stores each due account in turn. Each account's next time counts from
// the end of its own listing. A stall (the configuration, the credentials, the service)
// stops the run: the accounts not tried keep their last listing. So does the end of ctx
// (a shutdown, a lost lease): an account it interrupted, and those not tried, are left as
// they were, not failed, and whoever leads next resyncs them.
func (r *run) resync(ctx context.Context, due []string) *stall {
	api, stalled, err := r.restClient(ctx, r.rs)
	switch {
	case ctx.Err() != nil:
		r.interrupted = true
		return nil
	case err != nil:
		// Not a configuration to mend (the API server did not answer in time, say): a
		// failure retried on the backoff, not a stall.
		stalled = &stall{reason: v1alpha1.ReasonResyncFailed, message: truncate(err.Error()), transient: true}
	case stalled == nil:
		scanner := &tencent.Scanner{Client: api, Limiter: r.paces.of(r.rs.Spec.SDKAppID, r.Pace), Backoff: r.PageBackoff}
		for i, account := range due {
			if ctx.Err() != nil {
				logf.FromContext(ctx).Info("resync interrupted; the accounts not tried are left as they were", "notTried", len(due)-i)
				r.interrupted = true
				return nil
			}
			if stalled = r.resyncAccount(ctx, scanner, findAccount(r.accounts, account)); stalled != nil {
				due = due[i+1:] // the account that met it has its failure recorded
				break
			}
		}
	}
	if stalled == nil {
		return nil
	}
	end, base, every := r.now(), r.failureBackoff(), interval(r.rs)
	for _, account := range due {
		postponed(findAccount(r.accounts, account), end, base, every)
	}
	// A transient failure counts as a failure of each due account; a stall once.
	result, count, verb := resultStalled, 1.0, "resync stalled"
	if stalled.transient {
		result, count, verb = resultFailed, float64(len(due)), "resync failed"
	}
	resyncsTotal.WithLabelValues(result).Add(count)
	r.event(corev1.EventTypeWarning, v1alpha1.ReasonResyncFailed, "%s", stalled.message)
	logf.FromContext(ctx).Info(verb, "reason", stalled.reason, "message", stalled.message)
	return stalled
}

func (r *Reconciler) failureBackoff() time.Duration {
	if r.FailureBackoff > 0 {
		return r.FailureBackoff
	}
	return DefaultFailureBackoff
}

// resyncAccount lists one account and stores its snapshot, recording the outcome in
// entry. It returns a stall when Tencent refused the credentials or the service, which
// every other account would meet too.
func (r *run) resyncAccount(runCtx context.Context, scanner *tencent.Scanner, entry *v1alpha1.AccountResync) *stall {
	log := logf.FromContext(runCtx).WithValues("officialAccount", entry.OfficialAccount)
	ctx, cancel := context.WithTimeout(runCtx, accountScanTimeout)
	defer cancel()
	started := r.now()
	scan, err := scanner.Subscribers(ctx, entry.OfficialAccount)
	if err == nil {
		err = r.storeSnapshot(ctx, entry, scan, started)
	}
	if err != nil && runCtx.Err() != nil {
		// The run was cancelled, not the account's doing: left as it was (a snapshot in
		// progress stays recorded, for the next try to complete).
		log.Info("resync interrupted", "error", err.Error())
		r.interrupted = true
		return nil
	}
	if scan != nil {
		entry.Calls = int32(scan.Calls)
	}
	end, every := r.now(), interval(r.rs)
	var tencentErr *tencent.Error
	switch {
	case err == nil:
		succeeded(entry, end, every)
		resyncsTotal.WithLabelValues(resultResynced).Inc()
		change := "unchanged since the last resync"
		if entry.Changed {
			change = "changed since the last resync"
		}
		r.event(corev1.EventTypeNormal, v1alpha1.ReasonResynced, "%s: %d subscriber(s) listed in %d call(s), %s",
			entry.OfficialAccount, entry.Subscribers, entry.Calls, change)
		log.Info("resynced", "subscribers", entry.Subscribers, "calls", entry.Calls, "changed", entry.Changed, "snapshot", entry.Snapshot)
	case errors.As(err, &tencentErr) && tencentErr.Code == tencent.CodeAccountNotFound && entry.State == v1alpha1.AccountDestroyed:
		destroyed(entry, end, every)
		resyncsTotal.WithLabelValues(resultDestroyed).Inc()
		r.event(corev1.EventTypeNormal, v1alpha1.ReasonAccountDestroyed, "%s: the account was destroyed; its AccountDestroyed event ended every subscription",
			entry.OfficialAccount)
		log.Info("account destroyed", "calls", entry.Calls)
	default:
		failed(entry, err, end, r.failureBackoff(), every)
		resyncsTotal.WithLabelValues(resultFailed).Inc()
		r.event(corev1.EventTypeWarning, v1alpha1.ReasonResyncFailed, "%s: %s", entry.OfficialAccount, truncate(err.Error()))
		log.Info("resync failed", "error", err.Error(), "failures", entry.Failures, "next", entry.NextResyncTime)
		if errors.As(err, &tencentErr) && tencentErr.Refused() {
			return &stall{reason: v1alpha1.ReasonTencentRefused, message: truncate("Tencent refused the resync, check the secret key, " +
				"the admin account and that Official Accounts are enabled: " + err.Error())}
		}
	}
	return nil
}

// storeSnapshot stores the listing as a snapshot, reusing the time and id of one that an
// earlier try left incomplete.
func (r *run) storeSnapshot(ctx context.Context, entry *v1alpha1.AccountResync, scan *tencent.Scan, started time.Time) error {
	names := make([]string, len(scan.Subscribers))
	for i, s := range scan.Subscribers {
		names[i] = s.Account
	}
	app, account := r.rs.Spec.SDKAppID, entry.OfficialAccount
	plan := entry.InProgress
	var parts map[int32][]string
	total, fits := 0, false
	if plan != nil {
		stored, err := r.storedParts(ctx, plan, account)
		if err != nil {
			return err
		}
		parts, total, fits = fillParts(plan, stored, names)
	}
	if !fits {
		// A new snapshot: T is recorded before its first part, so that a retry reuses it.
		plan = newPlan(app, account, snapshotTime(started), len(names))
		parts, total, _ = fillParts(plan, nil, names)
		entry.InProgress = plan
		if err := r.writeStatus(ctx, r.rs, func(st *v1alpha1.OfficialAccountResyncStatus) { st.Accounts = copyAccounts(r.accounts) }); err != nil {
			return fmt.Errorf("recording the snapshot before storing it: %w", err)
		}
	}
	if err := r.admitParts(ctx, len(parts)); err != nil {
		return err
	}
	// A plan reused from an earlier try may have had parts delivered and deleted: what
	// is stored now gets names of its own.
	if err := r.createParts(ctx, account, plan, parts, total, fits); err != nil {
		return err
	}
	hash := subscribersHash(names)
	entry.Changed = entry.ContentHash != "" && entry.ContentHash != hash
	entry.ContentHash, entry.Subscribers, entry.Snapshot = hash, int32(total), plan.Snapshot
	entry.LastResyncTime, entry.InProgress = metaTime(time.UnixMilli(plan.EventTime)), nil
	return nil
}

func (r *run) event(kind, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(r.rs, nil, kind, reason, "Resync", format, args...)
	}
}
