package resync

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// A term's end drops every resync's series, and a reconcile still finishing after it
// exports none: a replica that lost the lease exports nothing, not even of a resync
// deleted since, which it would never forget.
func TestTheEndOfATermDropsTheSeries(t *testing.T) {
	rs := &v1alpha1.OfficialAccountResync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "events", Name: "term", CreationTimestamp: metav1.Now()},
		Status: v1alpha1.OfficialAccountResyncStatus{Accounts: []v1alpha1.AccountResync{
			{OfficialAccount: "@TOA#_a", State: v1alpha1.AccountResynced, Subscribers: 3, LastResyncTime: metaTime(time.Now())},
		}},
	}
	r := &Reconciler{}
	r.exportMetrics(rs)
	if n := seriesOf(resyncInterval) + seriesOf(resyncLastSuccess); n != 2 {
		t.Fatalf("%d series exported, want 2", n)
	}
	r.endTerm()
	r.exportMetrics(rs) // a reconcile that ends after its term
	for name, n := range map[string]int{
		"subscribers":  seriesOf(resyncSubscribers),
		"last success": seriesOf(resyncLastSuccess),
		"interval":     seriesOf(resyncInterval),
	} {
		if n != 0 {
			t.Errorf("%d %s series left after the term", n, name)
		}
	}
}

// A suspended resync is never overdue: its series are forgotten.
func TestASuspendedResyncHasNoSeries(t *testing.T) {
	rs := &v1alpha1.OfficialAccountResync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "events", Name: "suspended", CreationTimestamp: metav1.Now()},
		Status:     v1alpha1.OfficialAccountResyncStatus{Accounts: []v1alpha1.AccountResync{{OfficialAccount: "@TOA#_a"}}},
	}
	r := &Reconciler{}
	r.exportMetrics(rs)
	rs.Spec.Suspend = true
	r.exportMetrics(rs)
	if n := seriesOf(resyncLastSuccess) + seriesOf(resyncInterval); n != 0 {
		t.Fatalf("%d series of a suspended resync", n)
	}
}

// seriesOf counts the series a collector holds.
func seriesOf(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}
