package sinks

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/jackc/pgx/v5"
)

// deliverAll delivers the events in order, failing the test at the first error.
func deliverAll(t *testing.T, sink Sink, events ...*v1alpha1.OfficialAccountSubscription) {
	t.Helper()
	for _, ev := range events {
		if err := sink.Deliver(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// destroyedEvent is the AccountDestroyed event of the test account, at the time given.
func destroyedEvent(id string, at time.Time) *v1alpha1.OfficialAccountSubscription {
	ev := pgEvent(id, v1alpha1.ActionAccountDestroyed, at.UnixMilli())
	ev.Spec.CallbackCommand, ev.Spec.OperatorAccount, ev.Spec.OwnerAccount =
		"OfficialAccount.CallbackAfterOfficialAccountDestroyed", "", "owner"
	return ev
}

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
	deliverAll(t, sink,
		pgEvent("alice-in", v1alpha1.ActionSubscribe, before, "alice"),    // listed: stays subscribed
		pgEvent("bob-in", v1alpha1.ActionSubscribe, before, "bob"),        // left while the webhook was down
		pgEvent("carol-in", v1alpha1.ActionSubscribe, after, "carol"),     // subscribed after the snapshot
		pgEvent("dave-out", v1alpha1.ActionUnsubscribe, after, "dave"),    // listed, but left after it
		pgEvent("frank-out", v1alpha1.ActionUnsubscribe, before, "frank"), // gone before, not listed
	)

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

// hasRow tells whether the table has a row for the subscriber.
func hasRow(t *testing.T, conn *pgx.Conn, subscriber string) bool {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM officialaccount_subscribers WHERE subscriber = $1`, subscriber).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// An older snapshot applied after a newer one (both retried after an outage) changes
// nothing: not a row the newer one unsubscribed, not a member without a row.
func TestPostgresSkipsASnapshotOlderThanTheLastApplied(t *testing.T) {
	pg := startPostgres(t)
	sink := newPostgresSink(t, pg)
	conn := connect(t, pg)
	ctx := context.Background()
	older, newer := time.UnixMilli(1_700_000_000_000), time.UnixMilli(1_700_000_600_000)
	if err := sink.Deliver(ctx, pgEvent("bob-in", v1alpha1.ActionSubscribe, older.Add(-time.Hour).UnixMilli(), "bob")); err != nil {
		t.Fatal(err)
	}
	// The newer listing: alice alone; bob left.
	if err := sink.Deliver(ctx, snapshotPart("oasnap-new", newer, 1, 1, 1, "alice")); err != nil {
		t.Fatal(err)
	}
	// The older one still lists bob, and carol, who left before the newer one.
	for part, who := range []string{"bob", "carol"} {
		if err := sink.Deliver(ctx, snapshotPart("oasnap-old", older, int32(part+1), 2, 2, who)); err != nil {
			t.Fatal(err)
		}
	}
	if r := readRow(t, conn, "bob"); r.Subscribed || r.EventID != "oasnap-new" {
		t.Errorf("bob: subscribed %v by %s; the newer snapshot unsubscribed him", r.Subscribed, r.EventID)
	}
	if hasRow(t, conn, "carol") {
		t.Error("the older snapshot added carol, whom the newer one does not list")
	}
	var parts int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM officialaccount_subscribers_snapshot_parts").Scan(&parts); err != nil {
		t.Fatal(err)
	}
	if parts != 0 {
		t.Errorf("%d parts of the skipped snapshot kept", parts)
	}
}

// A part delivered again with other members (a resync retried after a crash stored it
// anew) adds them: nobody either delivery listed is taken for gone.
func TestPostgresTakesTheUnionOfAPartDeliveredTwice(t *testing.T) {
	pg := startPostgres(t)
	sink := newPostgresSink(t, pg)
	conn := connect(t, pg)
	ctx := context.Background()
	at := time.UnixMilli(1_700_000_000_000)
	for _, who := range []string{"alice", "bob"} {
		if err := sink.Deliver(ctx, pgEvent(who+"-in", v1alpha1.ActionSubscribe, at.Add(-time.Hour).UnixMilli(), who)); err != nil {
			t.Fatal(err)
		}
	}
	deliverAll(t, sink,
		snapshotPart("oasnap-3", at, 1, 2, 2, "alice"),
		snapshotPart("oasnap-3", at, 1, 2, 2, "bob"), // the same part, stored again after a crash
		snapshotPart("oasnap-3", at, 2, 2, 2),
	)
	for _, who := range []string{"alice", "bob"} {
		if r := readRow(t, conn, who); !r.Subscribed {
			t.Errorf("%s was unsubscribed by %s, though a delivery of part 1 listed them", who, r.EventID)
		}
	}
}

// An AccountDestroyed event unsubscribes every older row of the account in one statement;
// a newer event still wins, and an older snapshot cannot bring anyone back.
func TestPostgresAppliesADestroyedAccount(t *testing.T) {
	pg := startPostgres(t)
	sink := newPostgresSink(t, pg)
	conn := connect(t, pg)
	ctx := context.Background()
	destroyedAt := time.UnixMilli(1_700_000_000_000)
	before, after := destroyedAt.Add(-time.Minute).UnixMilli(), destroyedAt.Add(time.Minute).UnixMilli()
	deliverAll(t, sink,
		pgEvent("alice-in", v1alpha1.ActionSubscribe, before, "alice", "bob"),
		pgEvent("carol-in", v1alpha1.ActionSubscribe, after, "carol"), // a newer event: the account was made anew
	)
	destroyed := destroyedEvent("destroyed", destroyedAt)
	if err := sink.Deliver(ctx, destroyed); err != nil {
		t.Fatal(err)
	}
	if err := sink.Deliver(ctx, snapshotPart("oasnap-4", destroyedAt.Add(-time.Second), 1, 1, 2, "alice", "dave")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		subscriber     string
		wantSubscribed bool
		wantEventID    string
	}{
		{"alice", false, "destroyed"},
		{"bob", false, "destroyed"},
		{"carol", true, "carol-in"},
	}
	for _, tt := range tests {
		if r := readRow(t, conn, tt.subscriber); r.Subscribed != tt.wantSubscribed || r.EventID != tt.wantEventID {
			t.Errorf("%s: subscribed %v by %s, want %v by %s", tt.subscriber, r.Subscribed, r.EventID, tt.wantSubscribed, tt.wantEventID)
		}
	}
	if hasRow(t, conn, "dave") {
		t.Error("a snapshot older than the destruction added dave")
	}
}

// A Subscribe or Unsubscribe no newer than the account's destruction changes nothing, for
// a member with a row and one without: retries come in any order, so one older than an
// AccountDestroyed already applied may still arrive. A newer one still applies.
func TestPostgresIgnoresAnEventOlderThanTheDestruction(t *testing.T) {
	pg := startPostgres(t)
	sink := newPostgresSink(t, pg)
	conn := connect(t, pg)
	ctx := context.Background()
	destroyedAt := time.UnixMilli(1_700_000_000_000)
	before, after := destroyedAt.Add(-time.Minute).UnixMilli(), destroyedAt.Add(time.Minute).UnixMilli()
	if err := sink.Deliver(ctx, pgEvent("alice-in", v1alpha1.ActionSubscribe, before-1000, "alice")); err != nil {
		t.Fatal(err)
	}
	destroyed := destroyedEvent("destroyed", destroyedAt)
	deliverAll(t, sink,
		destroyed,
		pgEvent("late-in", v1alpha1.ActionSubscribe, before, "alice", "zoe"), // a retry older than the destruction
		pgEvent("same-ms", v1alpha1.ActionSubscribe, destroyedAt.UnixMilli(), "yann"),
		pgEvent("late-out", v1alpha1.ActionUnsubscribe, before, "xavier"),
		pgEvent("walt-in", v1alpha1.ActionSubscribe, after, "walt"), // the account made anew
	)
	if r := readRow(t, conn, "alice"); r.Subscribed || r.EventID != "destroyed" {
		t.Errorf("alice: subscribed %v by %s, want unsubscribed by destroyed", r.Subscribed, r.EventID)
	}
	for _, who := range []string{"zoe", "yann", "xavier"} {
		if hasRow(t, conn, who) {
			t.Errorf("an event no newer than the destruction wrote a row for %s", who)
		}
	}
	if r := readRow(t, conn, "walt"); !r.Subscribed || r.EventID != "walt-in" {
		t.Errorf("walt: subscribed %v by %s, want subscribed by walt-in", r.Subscribed, r.EventID)
	}
}
