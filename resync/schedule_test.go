package resync

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func TestFailureBackoff(t *testing.T) {
	tests := []struct {
		failures       int32
		base, interval time.Duration
		want           time.Duration
	}{
		{1, 30 * time.Second, 6 * time.Hour, 30 * time.Second},
		{2, 30 * time.Second, 6 * time.Hour, time.Minute},
		{4, 30 * time.Second, 6 * time.Hour, 4 * time.Minute},
		{5, 30 * time.Second, 6 * time.Hour, 5 * time.Minute}, // at most 5 minutes
		{40, 30 * time.Second, 6 * time.Hour, 5 * time.Minute},
		{3, 30 * time.Second, time.Minute, time.Minute},            // never beyond the interval
		{1, 100 * time.Millisecond, 6 * time.Hour, time.Second},    // never less than a second
		{1, 30 * time.Second, 200 * time.Millisecond, time.Second}, // even with a shorter interval
	}
	for _, tt := range tests {
		if got := failureBackoff(tt.failures, tt.base, tt.interval); got != tt.want {
			t.Errorf("failureBackoff(%d, %s, %s) = %s, want %s", tt.failures, tt.base, tt.interval, got, tt.want)
		}
	}
}

func TestDueAccounts(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return metaTime(now.Add(d)) }
	settled := func(mutate func(*v1alpha1.OfficialAccountResync)) *v1alpha1.OfficialAccountResync {
		rs := &v1alpha1.OfficialAccountResync{
			ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Spec:       v1alpha1.OfficialAccountResyncSpec{OfficialAccounts: []string{"a", "b", "c"}},
			Status: v1alpha1.OfficialAccountResyncStatus{ObservedGeneration: 2, SecretsVersion: "v1", Accounts: []v1alpha1.AccountResync{
				{OfficialAccount: "a", NextResyncTime: at(time.Hour)},
				{OfficialAccount: "b", NextResyncTime: at(-time.Second)},
				{OfficialAccount: "c", NextResyncTime: at(time.Minute)},
			}},
		}
		if mutate != nil {
			mutate(rs)
		}
		return rs
	}
	stalled := func(rs *v1alpha1.OfficialAccountResync) {
		meta.SetStatusCondition(&rs.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: "x"})
	}
	tests := []struct {
		name    string
		rs      *v1alpha1.OfficialAccountResync
		secrets string
		want    []string
	}{
		{"each account on its own time", settled(nil), "v1", []string{"b"}},
		{"a spec change resyncs all", settled(func(rs *v1alpha1.OfficialAccountResync) { rs.Generation = 3 }), "v1", []string{"a", "b", "c"}},
		{"the annotation resyncs all", settled(func(rs *v1alpha1.OfficialAccountResync) {
			rs.Annotations = map[string]string{v1alpha1.AnnotationResyncNow: "1"}
		}), "v1", []string{"a", "b", "c"}},
		{"an account new to the spec", settled(func(rs *v1alpha1.OfficialAccountResync) {
			rs.Status.Accounts = rs.Status.Accounts[:2]
		}), "v1", []string{"b", "c"}},
		{"changed Secrets after a stall resync all", settled(stalled), "v2", []string{"a", "b", "c"}},
		{"unchanged Secrets after a stall wait", settled(stalled), "v1", []string{"b"}},
		{"changed Secrets without a stall wait", settled(nil), "v2", []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dueAccounts(tt.rs, now, tt.secrets)
			if len(got) != len(tt.want) {
				t.Fatalf("due %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("due %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// The next resync counts from the end of the run, so that a run longer than its interval
// or backoff is still followed by another.
func TestScheduleCountsFromTheRunsEnd(t *testing.T) {
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	end := start.Add(40 * time.Minute) // longer than the interval
	var ok, bad v1alpha1.AccountResync
	succeeded(&ok, end, 10*time.Minute)
	failed(&bad, errors.New("boom"), end, 30*time.Second, 10*time.Minute)
	st := &v1alpha1.OfficialAccountResyncStatus{Accounts: []v1alpha1.AccountResync{ok, bad}}
	if !ok.NextResyncTime.Equal(nextTime(end.Add(10 * time.Minute))) {
		t.Errorf("next after success %s", ok.NextResyncTime)
	}
	if got := requeueAfter(st, end); got != 30*time.Second {
		t.Errorf("requeue after %s, want the failed account's 30s", got)
	}
	if got := requeueAfter(st, end.Add(time.Hour)); got != minRequeue {
		t.Errorf("requeue after %s when overdue, want %s: never dropped", got, minRequeue)
	}
}

func TestSummarize(t *testing.T) {
	t1, t2 := metaTime(time.Unix(1000, 0)), metaTime(time.Unix(2000, 0))
	rs := &v1alpha1.OfficialAccountResync{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
	tests := []struct {
		name       string
		accounts   []v1alpha1.AccountResync
		stall      *stall
		wantReady  metav1.ConditionStatus
		wantReason string
		wantLast   *metav1.Time
		counts     [3]int32
	}{
		{"all resynced", []v1alpha1.AccountResync{
			{OfficialAccount: "a", State: v1alpha1.AccountResynced, LastResyncTime: t2},
			{OfficialAccount: "b", State: v1alpha1.AccountResynced, LastResyncTime: t1},
		}, nil, metav1.ConditionTrue, v1alpha1.ReasonResynced, t1, [3]int32{2, 0, 0}},
		{"a destroyed account is not a failure", []v1alpha1.AccountResync{
			{OfficialAccount: "a", State: v1alpha1.AccountResynced, LastResyncTime: t2},
			{OfficialAccount: "b", State: v1alpha1.AccountDestroyed},
		}, nil, metav1.ConditionTrue, v1alpha1.ReasonResynced, t2, [3]int32{1, 0, 1}},
		{"one failing", []v1alpha1.AccountResync{
			{OfficialAccount: "a", State: v1alpha1.AccountResynced, LastResyncTime: t2},
			{OfficialAccount: "b", State: v1alpha1.AccountFailed, LastError: "Tencent REST API error 130004"},
		}, nil, metav1.ConditionFalse, v1alpha1.ReasonResyncFailed, nil, [3]int32{1, 1, 0}},
		{"stalled", []v1alpha1.AccountResync{{OfficialAccount: "a"}},
			&stall{reason: v1alpha1.ReasonSecretNotAllowed, message: "label it"}, metav1.ConditionFalse, v1alpha1.ReasonSecretNotAllowed, nil, [3]int32{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &v1alpha1.OfficialAccountResyncStatus{Accounts: tt.accounts}
			summarize(st, rs, tt.stall)
			ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
			if ready.Status != tt.wantReady || ready.Reason != tt.wantReason {
				t.Fatalf("Ready %s %s: %s", ready.Status, ready.Reason, ready.Message)
			}
			if got := [3]int32{st.ResyncedAccounts, st.FailingAccounts, st.DestroyedAccounts}; got != tt.counts {
				t.Errorf("counts %v, want %v", got, tt.counts)
			}
			if (st.LastResyncTime == nil) != (tt.wantLast == nil) || (tt.wantLast != nil && !st.LastResyncTime.Equal(tt.wantLast)) {
				t.Errorf("lastResyncTime %v, want %v", st.LastResyncTime, tt.wantLast)
			}
			if meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionStalled) != (tt.stall != nil) {
				t.Errorf("Stalled %v", st.Conditions)
			}
			if tt.wantReason == v1alpha1.ReasonResyncFailed && !strings.Contains(ready.Message, "b: Tencent REST API error 130004") {
				t.Errorf("the message does not name the failing account: %s", ready.Message)
			}
		})
	}
}

// A next resync is never earlier than asked, once the API server keeps it to the second.
func TestNextTimeRoundsUp(t *testing.T) {
	base := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   time.Time
		want time.Time
	}{
		{"on a second", base, base},
		{"just past a second", base.Add(time.Millisecond), base.Add(time.Second)},
		{"just before the next", base.Add(999 * time.Millisecond), base.Add(time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := nextTime(tt.in)
			if !got.Time.Equal(tt.want) {
				t.Errorf("nextTime(%s) = %s, want %s", tt.in, got.Time, tt.want)
			}
			// What the API server stores of it.
			var stored metav1.Time
			raw, err := got.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if err := stored.UnmarshalJSON(raw); err != nil {
				t.Fatal(err)
			}
			if stored.Before(&metav1.Time{Time: tt.in}) {
				t.Errorf("stored as %s, before %s", stored.Time, tt.in)
			}
		})
	}
}
