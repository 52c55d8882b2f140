package resync

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// Each account keeps its own schedule in its status entry: the next resync an interval
// after its last one ended, or, after a failure, its own backoff. Everything here is pure:
// the reconciler reads the clock and the cluster, these functions decide.

const (
	defaultInterval = 6 * time.Hour
	// maxFailureBackoff bounds an account's backoff (and the interval bounds it too).
	maxFailureBackoff = 5 * time.Minute
	// minRequeue keeps the next resync ahead of the clock, so that a run longer than its
	// own schedule (a large account, a slow API) is followed by another, never dropped as
	// a negative RequeueAfter would be.
	minRequeue = time.Second
)

func interval(rs *v1alpha1.OfficialAccountResync) time.Duration {
	if rs.Spec.Interval != nil && rs.Spec.Interval.Duration > 0 {
		return rs.Spec.Interval.Duration
	}
	return defaultInterval
}

// failureBackoff is the wait after an account's failures-th failure in a row: base
// doubling, at most maxFailureBackoff and at most the interval.
func failureBackoff(failures int32, base, interval time.Duration) time.Duration {
	d := base
	for i := int32(1); i < failures && d < maxFailureBackoff; i++ {
		d *= 2
	}
	return max(min(d, maxFailureBackoff, interval), minRequeue)
}

// dueAccounts are the accounts to resync now: every one when the spec changed, the resync
// annotation has a new value, or the credentials changed after the resync stalled on them;
// otherwise those whose own time has come.
func dueAccounts(rs *v1alpha1.OfficialAccountResync, now time.Time, secretsVersion string) []string {
	st := rs.Status
	all := st.ObservedGeneration != rs.Generation || rs.Annotations[v1alpha1.AnnotationResyncNow] != st.LastHandledResync ||
		(meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionStalled) && st.SecretsVersion != secretsVersion)
	var due []string
	for _, account := range rs.Spec.OfficialAccounts {
		entry := findAccount(st.Accounts, account)
		if all || entry == nil || entry.NextResyncTime == nil || !entry.NextResyncTime.After(now) {
			due = append(due, account)
		}
	}
	return due
}

// nextResync is the earliest of the accounts' next resyncs, nil if none has one.
func nextResync(accounts []v1alpha1.AccountResync) *metav1.Time {
	var next *metav1.Time
	for i := range accounts {
		if t := accounts[i].NextResyncTime; t != nil && (next == nil || t.Before(next)) {
			next = t
		}
	}
	return next
}

// requeueAfter is how long until the next account is due, at least minRequeue.
func requeueAfter(st *v1alpha1.OfficialAccountResyncStatus, now time.Time) time.Duration {
	next := nextResync(st.Accounts)
	if next == nil {
		return minRequeue
	}
	return max(next.Sub(now), minRequeue)
}

func findAccount(accounts []v1alpha1.AccountResync, account string) *v1alpha1.AccountResync {
	for i := range accounts {
		if accounts[i].OfficialAccount == account {
			return &accounts[i]
		}
	}
	return nil
}

// accountsInSpecOrder is one entry per account of the spec, the last status's where it
// has one: accounts removed from the spec lose theirs.
func accountsInSpecOrder(rs *v1alpha1.OfficialAccountResync) []v1alpha1.AccountResync {
	out := make([]v1alpha1.AccountResync, 0, len(rs.Spec.OfficialAccounts))
	for _, account := range rs.Spec.OfficialAccounts {
		if entry := findAccount(rs.Status.Accounts, account); entry != nil {
			out = append(out, *entry.DeepCopy())
		} else {
			out = append(out, v1alpha1.AccountResync{OfficialAccount: account})
		}
	}
	return out
}

// copyAccounts copies entries into a status, so that the run's later changes to its own
// entries cannot alias the status it compares against when it writes next.
func copyAccounts(accounts []v1alpha1.AccountResync) []v1alpha1.AccountResync {
	out := make([]v1alpha1.AccountResync, len(accounts))
	for i := range accounts {
		accounts[i].DeepCopyInto(&out[i])
	}
	return out
}

// succeeded records a resync of the account that stored its snapshot, ending at end.
func succeeded(entry *v1alpha1.AccountResync, end time.Time, every time.Duration) {
	entry.State, entry.Failures, entry.LastError, entry.LastErrorTime = v1alpha1.AccountResynced, 0, "", nil
	entry.NextResyncTime = nextTime(end.Add(every))
}

// destroyed records that Tencent no longer knows an account that was destroyed: not a
// failure; it is asked again at the interval, in case it is made anew.
func destroyed(entry *v1alpha1.AccountResync, end time.Time, every time.Duration) {
	entry.State, entry.Failures, entry.LastError, entry.LastErrorTime = v1alpha1.AccountDestroyed, 0, "", nil
	entry.InProgress = nil
	entry.NextResyncTime = nextTime(end.Add(every))
}

// markDestroyed records an account whose AccountDestroyed event was stored: it is due at
// once, so that the resync confirms it, and a 130004 for it is no failure.
func markDestroyed(entry *v1alpha1.AccountResync) {
	entry.State, entry.Failures, entry.LastError, entry.LastErrorTime = v1alpha1.AccountDestroyed, 0, "", nil
	entry.InProgress, entry.NextResyncTime = nil, nil
}

// failed records a failed resync of the account, retried on its own backoff.
func failed(entry *v1alpha1.AccountResync, err error, end time.Time, base, every time.Duration) {
	entry.State, entry.Failures = v1alpha1.AccountFailed, entry.Failures+1
	entry.LastError, entry.LastErrorTime = truncate(err.Error()), metaTime(end)
	entry.NextResyncTime = nextTime(end.Add(failureBackoff(entry.Failures, base, every)))
}

// postponed puts off an account that a stalled run did not try.
func postponed(entry *v1alpha1.AccountResync, end time.Time, base, every time.Duration) {
	entry.Failures++
	entry.NextResyncTime = nextTime(end.Add(failureBackoff(entry.Failures, base, every)))
}

// stall is a run that could not resync any account for a reason outside the operator: the
// configuration, the credentials, or Tencent refusing the service; or, when transient, an
// error that retrying mends (the API server not answering), which needs no human and is
// no Stalled condition.
type stall struct {
	reason    string
	message   string
	transient bool
}

// summarize sets the counts, times and conditions that follow from the accounts' entries
// and the run's stall, if any.
func summarize(st *v1alpha1.OfficialAccountResyncStatus, rs *v1alpha1.OfficialAccountResync, s *stall) {
	gen := rs.Generation
	st.ObservedGeneration, st.LastHandledResync = gen, rs.Annotations[v1alpha1.AnnotationResyncNow]
	st.ResyncedAccounts, st.FailingAccounts, st.DestroyedAccounts = 0, 0, 0
	var failing []string
	var oldest *metav1.Time
	complete, untried := true, 0
	for i := range st.Accounts {
		a := &st.Accounts[i]
		switch a.State {
		case "":
			untried++
		case v1alpha1.AccountResynced:
			st.ResyncedAccounts++
		case v1alpha1.AccountFailed:
			st.FailingAccounts++
			failing = append(failing, fmt.Sprintf("%s: %s", a.OfficialAccount, a.LastError))
		case v1alpha1.AccountDestroyed:
			st.DestroyedAccounts++
			continue
		}
		if a.LastResyncTime == nil {
			complete = false
		} else if oldest == nil || a.LastResyncTime.Before(oldest) {
			oldest = a.LastResyncTime
		}
	}
	st.LastResyncTime = nil // until every account has a snapshot
	if complete && oldest != nil {
		st.LastResyncTime = oldest
	}
	st.NextResyncTime = nextResync(st.Accounts)
	setCondition(st, v1alpha1.ConditionReconciling, metav1.ConditionFalse, v1alpha1.ReasonResynced, "no resync under way", gen)
	switch {
	case s != nil && s.transient:
		setCondition(st, v1alpha1.ConditionReady, metav1.ConditionFalse, s.reason, s.message, gen)
	case s != nil:
		setCondition(st, v1alpha1.ConditionReady, metav1.ConditionFalse, s.reason, s.message, gen)
		setCondition(st, v1alpha1.ConditionStalled, metav1.ConditionTrue, s.reason, s.message, gen)
		return
	case len(failing) > 0:
		msg := fmt.Sprintf("%d of %d account(s) failing, each retried on its own backoff: %s", len(failing), len(st.Accounts),
			strings.Join(failing, "; "))
		setCondition(st, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonResyncFailed, truncate(msg), gen)
	case untried > 0: // a run that ended before it tried them
		msg := fmt.Sprintf("%d of %d account(s) not yet resynced: the run ended before it tried them", untried, len(st.Accounts))
		setCondition(st, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonResyncing, msg, gen)
	default:
		msg := fmt.Sprintf("%d account(s) resynced", st.ResyncedAccounts)
		if st.DestroyedAccounts > 0 {
			msg += fmt.Sprintf(", %d destroyed", st.DestroyedAccounts)
		}
		setCondition(st, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonResynced, msg, gen)
	}
	meta.RemoveStatusCondition(&st.Conditions, v1alpha1.ConditionStalled)
}

func setCondition(st *v1alpha1.OfficialAccountResyncStatus, kind string, status metav1.ConditionStatus, reason, msg string, gen int64) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: kind, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
}

func metaTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}

// nextTime is a time the account is due at: the API server keeps times to the second, so
// it is rounded up, never down, which would resync up to a second before the interval or
// backoff has passed.
func nextTime(t time.Time) *metav1.Time {
	if rounded := t.Truncate(time.Second); rounded.Before(t) {
		t = rounded.Add(time.Second)
	}
	return metaTime(t)
}

// maxMessageLength keeps an error in status readable and the object small.
const maxMessageLength = 1024

func truncate(s string) string {
	if len(s) <= maxMessageLength {
		return s
	}
	return s[:maxMessageLength-3] + "..."
}
