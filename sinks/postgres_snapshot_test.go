package sinks

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// snapshotPart is part i of n of snapshot id, taken at t, listing subscribers.
func snapshotPart(id string, t time.Time, part, parts int32, total int32, subscribers ...string) *v1alpha1.OfficialAccountSubscription {
	ev := pgEvent(id+"-part", v1alpha1.ActionSnapshot, t.UnixMilli(), subscribers...)
	ev.Spec.CallbackCommand, ev.Spec.OperatorAccount = v1alpha1.CommandSnapshot, ""
	ev.Spec.Snapshot = &v1alpha1.SnapshotPart{ID: id, Part: part, Parts: parts, Subscribers: total}
	return ev
}

func TestPostgresAppliesACompleteSnapshotOnly(t *testing.T) {
	pg := startPostgres(t)
	sink := newPostgresSink(t, pg)
	conn := connect(t, pg)
	ctx := context.Background()
	snapshotTime := time.UnixMilli(1_700_000_000_000)
	before, after := snapshotTime.Add(-time.Hour).UnixMilli(), snapshotTime.Add(time.Minute).UnixMilli()
	for _, ev := range []*v1alpha1.OfficialAccountSubscription{
		pgEvent("alice-in", v1alpha1.ActionSubscribe, before, "alice"),    // listed: stays subscribed
		pgEvent("bob-in", v1alpha1.ActionSubscribe, before, "bob"),        // left while the webhook was down
		pgEvent("carol-in", v1alpha1.ActionSubscribe, after, "carol"),     // subscribed after the snapshot
		pgEvent("dave-out", v1alpha1.ActionUnsubscribe, after, "dave"),    // listed, but left after it
		pgEvent("frank-out", v1alpha1.ActionUnsubscribe, before, "frank"), // gone before, not listed
	} {
		if err := sink.Deliver(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	// Part 1 of 2 alone changes nothing: a partial snapshot says nothing of who left.
	if err := sink.Deliver(ctx, snapshotPart("oasnap-1", snapshotTime, 1, 2, 4, "alice", "dave")); err != nil {
		t.Fatal(err)
	}
	if r := readRow(t, conn, "bob"); !r.Subscribed {
		t.Fatal("a partial snapshot unsubscribed bob")
	}
	if err := sink.Deliver(ctx, snapshotPart("oasnap-1", snapshotTime, 2, 2, 4, "erin", "alice")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		subscriber     string
		wantSubscribed bool
		wantEventID    string
	}{
		{"alice", true, "oasnap-1"},
		{"bob", false, "oasnap-1"},
		{"carol", true, "carol-in"},
		{"dave", false, "dave-out"},
		{"erin", true, "oasnap-1"},
		{"frank", false, "frank-out"},
	}
	for _, tt := range tests {
		r := readRow(t, conn, tt.subscriber)
		if r.Subscribed != tt.wantSubscribed || r.EventID != tt.wantEventID {
			t.Errorf("%s: subscribed %v by %s, want %v by %s", tt.subscriber, r.Subscribed, r.EventID, tt.wantSubscribed, tt.wantEventID)
		}
	}
	var parts int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM officialaccount_subscribers_snapshot_parts").Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if parts != 0 {
		t.Fatalf("%d snapshot parts kept after the snapshot was applied", parts)
	}
}

// Parts delivered at once (from two lanes, or two replicas) still complete the snapshot:
// each waits for the other's lock instead of counting without it.
func TestPostgresSnapshotPartsDeliveredAtOnce(t *testing.T) {
	pg := startPostgres(t)
	sink := newPostgresSink(t, pg)
	conn := connect(t, pg)
	ctx := context.Background()
	snapshotTime := time.UnixMilli(1_700_000_000_000)
	if err := sink.Deliver(ctx, pgEvent("gone-in", v1alpha1.ActionSubscribe, snapshotTime.Add(-time.Hour).UnixMilli(), "gone")); err != nil {
		t.Fatal(err)
	}
	const parts = 8
	var wg sync.WaitGroup
	errs := make(chan error, parts)
	for i := range int32(parts) {
		wg.Go(func() {
			errs <- sink.Deliver(ctx, snapshotPart("oasnap-2", snapshotTime, i+1, parts, parts, "member-"+string(rune('a'+i))))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if r := readRow(t, conn, "gone"); r.Subscribed {
		t.Fatal("the snapshot was never applied: every part counted without the others")
	}
}
