package operator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

var testLeaseTimes = LeaderElectionTimes{LeaseDuration: 4 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 250 * time.Millisecond}

// termRecorder is a term that says when it starts and with what cause it ends.
type termRecorder struct {
	started chan struct{}
	ended   chan error
}

func newTermRecorder() *termRecorder {
	return &termRecorder{started: make(chan struct{}, 4), ended: make(chan error, 4)}
}

func (r *termRecorder) term(ctx context.Context) error {
	r.started <- struct{}{}
	<-ctx.Done()
	r.ended <- context.Cause(ctx)
	return nil
}

func wait[T any](t *testing.T, ch <-chan T, within time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(within):
		t.Fatalf("%s did not happen within %s", what, within)
		panic("unreachable")
	}
}

func holder(t *testing.T, c client.Client) string {
	t.Helper()
	var lease coordinationv1.Lease
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: leaderElectionID}, &lease); err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(lease.Spec.HolderIdentity, "")
}

// A leader whose renewals fail must not release the lease while its term still runs:
// client-go's ReleaseOnCancel releases it before the leading context ends, and a standby
// could lead alongside the old term for the whole shutdown timeout.
func TestALostLeaseIsNotReleasedAndEndsTheTermAtOnce(t *testing.T) {
	cfg, _ := testenv.StartForTest(t, testenv.NewEnvironment())
	c, err := client.New(cfg, client.Options{Scheme: NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newTermRecorder()
	go func() { _ = campaign(ctx, cfg, "default", testLeaseTimes, rec.term) }()
	wait(t, rec.started, 30*time.Second, "the first election")
	leader := holder(t, c)

	// The API server now refuses every renewal of the lease, as an overloaded one times
	// them out; it still accepts a release (a lease of one second).
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "refuse-renewals"},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule: admissionv1.Rule{APIGroups: []string{"coordination.k8s.io"}, APIVersions: []string{"*"}, Resources: []string{"leases"}}},
			}}},
			Validations: []admissionv1.Validation{{Expression: "object.spec.leaseDurationSeconds == 1"}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: "refuse-renewals"},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name, ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}}}
	for _, obj := range []client.Object{policy, binding} {
		if err := c.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}

	cause := wait(t, rec.ended, time.Minute, "the term's end after the lease was lost")
	if !errors.Is(cause, errLeaseLost) {
		t.Fatalf("the term ended with %v, want errLeaseLost: its deliveries must be cancelled at once", cause)
	}
	if got := holder(t, c); got != leader {
		t.Fatalf("the lease's holder is %q once the term ended, not %q: a lost lease was released while the term ran", got, leader)
	}
}

// An orderly stop releases the lease once the term has returned, so that a standby takes
// over at once.
func TestAnOrderlyStopReleasesTheLeaseAfterTheTerm(t *testing.T) {
	cfg, _ := testenv.StartForTest(t, testenv.NewEnvironment())
	c, err := client.New(cfg, client.Options{Scheme: NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rec := newTermRecorder()
	done := make(chan error, 1)
	go func() { done <- campaign(ctx, cfg, "default", testLeaseTimes, rec.term) }()
	wait(t, rec.started, 30*time.Second, "the election")
	cancel()
	if cause := wait(t, rec.ended, 10*time.Second, "the term's end"); !errors.Is(cause, context.Canceled) {
		t.Fatalf("the term ended with %v, want context.Canceled", cause)
	}
	wait(t, done, 30*time.Second, "the campaign's end")
	if got := holder(t, c); got != "" {
		t.Fatalf("the lease is still held by %q after an orderly stop", got)
	}
}

// lateRenewal is a lease lock whose first read is followed by a renewal landing on the
// API server, as one the ended election cancelled on the client can land after it.
type lateRenewal struct {
	resourcelock.Interface
	renew func()
	once  sync.Once
}

func (l *lateRenewal) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	record, raw, err := l.Interface.Get(ctx)
	l.once.Do(l.renew)
	return record, raw, err
}

// A release that conflicts with a renewal landing late reads the lease again, rather
// than leaving a standby to wait the lease out.
func TestAReleaseOutlastsALateRenewal(t *testing.T) {
	cfg, _ := testenv.StartForTest(t, testenv.NewEnvironment())
	c, err := client.New(cfg, client.Options{Scheme: NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	lock, err := newLeaseLock(cfg, "default", testLeaseTimes.RenewDeadline)
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	if err := lock.Create(context.Background(), resourcelock.LeaderElectionRecord{HolderIdentity: lock.Identity(),
		LeaseDurationSeconds: 15, AcquireTime: now, RenewTime: now}); err != nil {
		t.Fatal(err)
	}
	renewed := false
	late := &lateRenewal{Interface: lock, renew: func() {
		var lease coordinationv1.Lease
		key := client.ObjectKey{Namespace: "default", Name: leaderElectionID}
		if err := c.Get(context.Background(), key, &lease); err != nil {
			t.Error(err)
			return
		}
		lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		if err := c.Update(context.Background(), &lease); err != nil {
			t.Error(err)
			return
		}
		renewed = true
	}}

	releaseLease(late, testLeaseTimes.RenewDeadline, testr.New(t))

	if !renewed {
		t.Fatal("the late renewal did not land: the test proves nothing")
	}
	if got := holder(t, c); got != "" {
		t.Fatalf("the lease is still held by %q after a release that met a late renewal", got)
	}
	var lease coordinationv1.Lease
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: leaderElectionID}, &lease); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(lease.Spec.LeaseDurationSeconds, 0); got != 1 {
		t.Fatalf("the released lease runs %d s, want 1: a standby would wait it out", got)
	}
}
