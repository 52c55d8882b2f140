package sinks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

func newMySQLSink(t *testing.T, dsn, table string, timeout time.Duration) *MySQL {
	t.Helper()
	sink, err := NewMySQL(dsn, table, true, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	return sink
}

func mysqlDeliver(t *testing.T, sink *MySQL, events ...*v1alpha1.OfficialAccountSubscription) {
	t.Helper()
	for _, ev := range events {
		if err := sink.Deliver(context.Background(), ev); err != nil {
			t.Fatalf("Deliver %s: %v", ev.Name, err)
		}
	}
}

// mysqlRow is what the mirror keeps of one subscriber.
type mysqlRow struct {
	Subscribed bool
	EventTime  time.Time
	EventID    string
	UpdatedAt  time.Time
}

// mysqlRows reads the test account's rows of table, by subscriber.
func mysqlRows(t *testing.T, db *sql.DB, table string) map[string]mysqlRow {
	t.Helper()
	rows, err := db.Query("SELECT subscriber, subscribed, event_time, event_id, updated_at FROM " + table +
		" WHERE sdk_app_id = '1400000000' AND official_account = '@TOA#_test_for_penn'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]mysqlRow{}
	for rows.Next() {
		var subscriber string
		var r mysqlRow
		if err := rows.Scan(&subscriber, &r.Subscribed, &r.EventTime, &r.EventID, &r.UpdatedAt); err != nil {
			t.Fatal(err)
		}
		got[subscriber] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// mysqlSubscribed lists the subscribed members of table, sorted.
func mysqlSubscribed(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	var members []string
	for subscriber, r := range mysqlRows(t, db, table) {
		if r.Subscribed {
			members = append(members, subscriber)
		}
	}
	slices.Sort(members)
	return members
}

// The newest event time wins whatever the order, a repeat changes nothing, and a split
// event's parts each apply their subscribers.
func TestMySQLNewestEventWins(t *testing.T) {
	srv := testenv.StartMariaDB(t)
	db := srv.DB(t)
	subscribe := pgEvent("sub", v1alpha1.ActionSubscribe, 1670574414123, "jared", "leckie", "jared")
	unsubscribe := pgEvent("unsub", v1alpha1.ActionUnsubscribe, 1670574499000, "jared")
	splitOne := pgEvent("split-1", v1alpha1.ActionSubscribe, 1670574450000, "p1")
	splitTwo := pgEvent("split-2", v1alpha1.ActionSubscribe, 1670574450000, "p2")
	for name, events := range map[string][]*v1alpha1.OfficialAccountSubscription{
		"in_order":   {subscribe, splitOne, splitTwo, unsubscribe},
		"reversed":   {unsubscribe, splitTwo, splitOne, subscribe},
		"repeated":   {subscribe, unsubscribe, subscribe, splitOne, splitTwo, splitOne},
		"older_last": {unsubscribe, unsubscribe, splitOne, splitTwo, subscribe},
	} {
		t.Run(name, func(t *testing.T) {
			table := "t_" + name
			sink := newMySQLSink(t, srv.DSN(srv.Password), table, 0)
			mysqlDeliver(t, sink, events...)
			rows := mysqlRows(t, db, table)
			if got := mysqlSubscribed(t, db, table); !slices.Equal(got, []string{"leckie", "p1", "p2"}) {
				t.Fatalf("subscribed %v, want leckie, p1 and p2 (jared unsubscribed last)", got)
			}
			if jared := rows["jared"]; jared.EventID != "unsub" || jared.EventTime.UnixMilli() != 1670574499000 {
				t.Fatalf("jared's row %+v, want the unsubscribe's", jared)
			}
		})
	}

	sink := newMySQLSink(t, srv.DSN(srv.Password), "", 0)
	mysqlDeliver(t, sink, subscribe)
	before := mysqlRows(t, db, DefaultMySQLTable)
	mysqlDeliver(t, sink, subscribe)
	if after := mysqlRows(t, db, DefaultMySQLTable); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a repeat changed the rows: %v -> %v", before, after)
	}
}

// A snapshot is applied once complete, never from a part; it subscribes whom it lists and
// unsubscribes whom it does not, unless a newer event says otherwise; an older snapshot and
// events older than the account's destruction change nothing.
func TestMySQLSnapshotsAndDestruction(t *testing.T) {
	srv := testenv.StartMariaDB(t)
	db := srv.DB(t)
	sink := newMySQLSink(t, srv.DSN(srv.Password), "", 0)
	table := DefaultMySQLTable
	mysqlDeliver(t, sink,
		pgEvent("a", v1alpha1.ActionSubscribe, 1000, "gone", "stays"),
		pgEvent("newer", v1alpha1.ActionSubscribe, 5000, "newer-than-snapshot"),
		redisSnapshotPart("snap", 1, 2, 3000, "stays", "new"),
		redisSnapshotPart("snap", 1, 2, 3000, "stays", "new"), // a part delivered again
	)
	if got := mysqlSubscribed(t, db, table); !slices.Equal(got, []string{"gone", "newer-than-snapshot", "stays"}) {
		t.Fatalf("after part 1 of 2: %v, want nothing applied", got)
	}
	mysqlDeliver(t, sink, redisSnapshotPart("snap", 2, 2, 3000, "other"))
	if got := mysqlSubscribed(t, db, table); !slices.Equal(got, []string{"new", "newer-than-snapshot", "other", "stays"}) {
		t.Fatalf("after the complete snapshot: %v", got)
	}
	var parts, listed int
	if err := db.QueryRow("SELECT (SELECT COUNT(*) FROM "+table+"_snapshot_parts), (SELECT COUNT(*) FROM "+
		table+"_snapshot_subscribers)").Scan(&parts, &listed); err != nil || parts != 0 || listed != 0 {
		t.Fatalf("after the snapshot was applied, %d parts and %d listed subscribers are kept (err %v), want none", parts, listed, err)
	}
	mysqlDeliver(t, sink, redisSnapshotPart("old", 1, 1, 2000, "gone", "fresh"))
	if got := mysqlSubscribed(t, db, table); slices.Contains(got, "gone") || slices.Contains(got, "fresh") {
		t.Fatalf("an older snapshot was applied: %v", got)
	}
	mysqlDeliver(t, sink,
		pgEvent("destroyed", v1alpha1.ActionAccountDestroyed, 4000),
		pgEvent("before-destruction", v1alpha1.ActionSubscribe, 3500, "too-late"),
		redisSnapshotPart("before-destruction", 1, 1, 3800, "too-late"),
	)
	if got := mysqlSubscribed(t, db, table); !slices.Equal(got, []string{"newer-than-snapshot"}) {
		t.Fatalf("after the destruction: %v, want only the subscriber newer than it", got)
	}
}

// A server down is retried and nothing is lost once it is back; a server that accepts
// connections and never answers holds a delivery no longer than the timeout; a lock held
// elsewhere past the lock wait timeout is retried; a wrong password fails the check
// without showing it.
func TestMySQLFaults(t *testing.T) {
	srv := testenv.StartMariaDB(t)
	// A sink with the default timeout creates the tables; the 1 s one is for the faults.
	if err := newMySQLSink(t, srv.DSN(srv.Password), "", 0).Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	sink := newMySQLSink(t, srv.DSN(srv.Password), "", time.Second)
	mysqlDeliver(t, sink, pgEvent("before", v1alpha1.ActionSubscribe, 1000, "before"))

	srv.Stop()
	during := pgEvent("during", v1alpha1.ActionSubscribe, 2000, "during")
	if err := sink.Deliver(context.Background(), during); err == nil || IsPermanent(err) || strings.Contains(err.Error(), srv.Password) {
		t.Fatalf("with the server down: err = %v, want one to retry, without the password", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := deliverUntilDone(sink, during); err != nil { // a server just started may be slow at first
		t.Fatal(err)
	}
	db := srv.DB(t)
	if got := mysqlSubscribed(t, db, DefaultMySQLTable); !slices.Equal(got, []string{"before", "during"}) {
		t.Fatalf("after the server came back: %v", got)
	}

	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	endsWithin(t, 10*time.Second, func() error {
		return sink.Deliver(context.Background(), pgEvent("frozen", v1alpha1.ActionSubscribe, 3000, "x"))
	})
	if err := srv.Thaw(); err != nil {
		t.Fatal(err)
	}

	// Another client holds the account's row: the sink's session gives up waiting for it
	// after half the sink's timeout (1205), before the delivery's deadline, and is told to
	// retry.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("SELECT * FROM " + DefaultMySQLTable + "_accounts FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	patient := newMySQLSink(t, srv.DSN(srv.Password), "", 4*time.Second)
	err = patient.Deliver(context.Background(), pgEvent("locked", v1alpha1.ActionAccountDestroyed, 4000))
	var myErr *mysql.MySQLError
	if _ = tx.Rollback(); !errors.As(err, &myErr) || myErr.Number != 1205 || IsPermanent(err) {
		t.Fatalf("behind a held lock: err = %v, want 1205 to retry", err)
	}
	mysqlDeliver(t, patient, pgEvent("locked", v1alpha1.ActionAccountDestroyed, 4000))

	wrong := newMySQLSink(t, srv.DSN("not-the-password"), "", 0)
	err = wrong.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "refused the credentials") || strings.Contains(err.Error(), "not-the-password") {
		t.Fatalf("Check with a wrong password: err = %v, want a failed check that says so and does not show it", err)
	}
	if err := wrong.Deliver(context.Background(), pgEvent("w", v1alpha1.ActionSubscribe, 5000, "w")); err == nil || IsPermanent(err) {
		t.Fatalf("Deliver with a wrong password: err = %v, want one to retry (a password being rotated)", err)
	}
	if _, err := NewMySQL("oa:s3cret@tcp(127.0.0.1:3306)/oa?timeout=soon", "", true, 0); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("a DSN that does not parse: err = %v, want one that does not show it", err)
	}
}

// The check asks for the privileges deliveries use, no fewer and no more: a user who may
// not write a table as a delivery would, or a table missing and not to be created, fails
// it for good.
func TestMySQLChecksTheTablesAndRights(t *testing.T) {
	srv := testenv.StartMariaDB(t)
	db := srv.DB(t)
	if err := newMySQLSink(t, srv.DSN(srv.Password), "", 0).Check(context.Background()); err != nil {
		t.Fatalf("Check as a user with every right: %v", err)
	}
	for _, tc := range []struct {
		user    string
		grants  []string
		wantErr string
	}{
		{"reader", []string{"SELECT ON oa.*"}, "1142"},
		{"no_update", []string{"SELECT, INSERT, DELETE ON oa.*"}, "1142"},
		{"least", []string{"SELECT, INSERT, UPDATE ON oa.*",
			"DELETE ON oa.officialaccount_subscribers_snapshot_parts", "DELETE ON oa.officialaccount_subscribers_snapshot_subscribers"}, ""},
	} {
		t.Run(tc.user, func(t *testing.T) {
			if _, err := db.Exec("CREATE USER '" + tc.user + "'@'%' IDENTIFIED BY 'pw'"); err != nil {
				t.Fatal(err)
			}
			for _, grant := range tc.grants {
				if _, err := db.Exec("GRANT " + grant + " TO '" + tc.user + "'@'%'"); err != nil {
					t.Fatal(err)
				}
			}
			sink, err := NewMySQL(fmt.Sprintf("%s:pw@tcp(127.0.0.1:%d)/oa", tc.user, srv.Port), "", false, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			err = sink.Check(context.Background())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Check with the least privileges deliveries need: %v", err)
				}
				mysqlDeliver(t, sink, pgEvent("least-in", v1alpha1.ActionSubscribe, 1000, "a"),
					redisSnapshotPart("least-snap", 1, 1, 2000, "b"), pgEvent("least-gone", v1alpha1.ActionAccountDestroyed, 3000))
			}
			if tc.wantErr != "" && (!IsPermanent(err) || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Check: err = %v, want a failure for good (error %s)", err, tc.wantErr)
			}
		})
	}
	missing, err := NewMySQL(srv.DSN(srv.Password), "not_there", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer missing.Close()
	if err := missing.Check(context.Background()); !IsPermanent(err) || !strings.Contains(err.Error(), "1146") {
		t.Fatalf("Check of a missing table not to be created: err = %v, want a failure for good (error 1146)", err)
	}
}

func TestClassifyMySQLError(t *testing.T) {
	for _, tc := range []struct {
		number    uint16
		permanent bool
	}{
		{1213, false}, // deadlock
		{1205, false}, // lock wait timeout
		{1040, false}, // too many connections
		{1290, false}, // read-only, during a failover
		{1045, false}, // refused credentials: a password being rotated
		{1142, true},  // no privilege on the table
		{1146, true},  // no such table
		{1406, true},  // a value too long for its column
		{1046, true},  // no database chosen: the DSN names none
		{1665, true},  // READ COMMITTED refused with binlog_format=STATEMENT
	} {
		err := classifyMySQLError(&mysql.MySQLError{Number: tc.number, Message: "m"})
		if IsPermanent(err) != tc.permanent {
			t.Errorf("error %d: %v, want permanent %v", tc.number, err, tc.permanent)
		}
	}
	if err := classifyMySQLError(mysql.ErrInvalidConn); IsPermanent(err) {
		t.Errorf("a lost connection: %v, want one to retry", err)
	}
}

// Deliveries of one account at once (parts of a snapshot, events, its destruction; from
// lanes or replicas), each retried as the delivery loop would, end as they would one by
// one: the account's lock orders them, and a deadlock is retried.
func TestMySQLDeliveriesAtOnce(t *testing.T) {
	srv := testenv.StartMariaDB(t)
	db := srv.DB(t)
	const parts = 8
	after := make([]string, parts)
	for i := range after {
		after[i] = fmt.Sprintf("after-member-%d", i)
	}
	for name, tc := range map[string]struct {
		destroyed bool
		want      []string
	}{
		// The snapshot (at 3000) is applied once complete: whom it lists are subscribed, and
		// "gone", subscribed by older events only, is not.
		"a snapshot": {want: append(slices.Clone(after), "member-0", "member-1", "member-2", "member-3", "member-4",
			"member-5", "member-6", "member-7", "stays")},
		// The destruction (at 4000) leaves only the members of newer events.
		"a snapshot and the destruction": {destroyed: true, want: after},
	} {
		t.Run(name, func(t *testing.T) {
			table := "t_" + strings.ReplaceAll(name, " ", "_")
			sink := newMySQLSink(t, srv.DSN(srv.Password), table, 0)
			mysqlDeliver(t, sink, pgEvent("before", v1alpha1.ActionSubscribe, 1000, "gone", "stays"))
			var events []*v1alpha1.OfficialAccountSubscription
			for i := range int32(parts) {
				member := fmt.Sprintf("member-%d", i)
				events = append(events,
					redisSnapshotPart("snap-"+table, i+1, parts, 3000, member, "stays"),
					pgEvent("old-"+member, v1alpha1.ActionSubscribe, 2000+int64(i), member, "gone"),
					pgEvent("new-"+member, v1alpha1.ActionSubscribe, 5000+int64(i), "after-"+member))
			}
			if tc.destroyed {
				events = append(events, pgEvent("destroyed", v1alpha1.ActionAccountDestroyed, 4000))
			}
			deliverAtOnce(t, sink, events)
			want := slices.Sorted(slices.Values(tc.want))
			if got := mysqlSubscribed(t, db, table); !slices.Equal(got, want) {
				t.Fatalf("subscribed %v, want %v", got, want)
			}
			var kept int
			if err := db.QueryRow("SELECT (SELECT COUNT(*) FROM " + table + "_snapshot_parts) + (SELECT COUNT(*) FROM " +
				table + "_snapshot_subscribers)").Scan(&kept); err != nil || kept != 0 {
				t.Fatalf("%d rows of snapshot parts kept (err %v), want none", kept, err)
			}
		})
	}
}

// deliverUntilDone delivers ev until it succeeds or fails for good, at most 20 times.
func deliverUntilDone(sink Sink, ev *v1alpha1.OfficialAccountSubscription) error {
	for attempt := 0; ; attempt++ {
		err := sink.Deliver(context.Background(), ev)
		if err == nil || IsPermanent(err) || attempt == 20 {
			return err
		}
	}
}

// deliverAtOnce delivers every event at the same time, each retried until it succeeds or
// fails for good, as the delivery loop would, and fails the test on an error.
func deliverAtOnce(t *testing.T, sink Sink, events []*v1alpha1.OfficialAccountSubscription) {
	t.Helper()
	errs := make(chan error, len(events))
	var wg sync.WaitGroup
	for _, ev := range events {
		wg.Go(func() { errs <- deliverUntilDone(sink, ev) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// An event's subscribers are written by one statement, in one transaction: a value the
// table cannot hold fails the event for good and none of its subscribers is written (the
// server is not strict by itself: the sink's session is).
func TestMySQLAnEventIsOneStatement(t *testing.T) {
	srv := testenv.StartMariaDB(t)
	db := srv.DB(t)
	sink := newMySQLSink(t, srv.DSN(srv.Password), "", 0)
	if err := sink.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	subscribers := make([]string, 500)
	for i := range subscribers {
		subscribers[i] = fmt.Sprintf("user-%03d", i)
	}
	before := mysqlInserts(t, db)
	mysqlDeliver(t, sink, pgEvent("five-hundred", v1alpha1.ActionSubscribe, 1000, subscribers...))
	// One INSERT makes sure the account has its row (the lock); the other writes the 500.
	if inserts := mysqlInserts(t, db) - before; inserts != 2 {
		t.Fatalf("%d INSERT statements for an event of 500 subscribers, want 2", inserts)
	}
	subscribers[499] = strings.Repeat("x", 33) // one byte over Tencent's limit
	err := sink.Deliver(context.Background(), pgEvent("too-long", v1alpha1.ActionUnsubscribe, 2000, subscribers...))
	if !IsPermanent(err) || !strings.Contains(err.Error(), "1406") {
		t.Fatalf("a subscriber too long for its column: err = %v, want a failure for good (error 1406)", err)
	}
	if got := mysqlSubscribed(t, db, DefaultMySQLTable); len(got) != 500 {
		t.Fatalf("%d of 500 still subscribed after a failed Unsubscribe of them all, want 500", len(got))
	}
	tooLate := pgEvent("year-10000", v1alpha1.ActionSubscribe, 253402300800000, "x") // 10000-01-01
	if err := sink.Deliver(context.Background(), tooLate); !IsPermanent(err) {
		t.Fatalf("an event time past DATETIME's range: err = %v, want a failure for good", err)
	}
}

// mysqlInserts is how many INSERT statements the server has run.
func mysqlInserts(t *testing.T, db *sql.DB) int {
	t.Helper()
	var name string
	var n int
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Com_insert'").Scan(&name, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Subscribers differing only by trailing spaces are two, as they are to Tencent.
func TestMySQLTrailingSpacesMakeAnotherSubscriber(t *testing.T) {
	srv := testenv.StartMariaDB(t)
	sink := newMySQLSink(t, srv.DSN(srv.Password), "", 0)
	mysqlDeliver(t, sink, pgEvent("bob", v1alpha1.ActionSubscribe, 1000, "bob", "bob "),
		pgEvent("bob-leaves", v1alpha1.ActionUnsubscribe, 2000, "bob"))
	if got := mysqlSubscribed(t, srv.DB(t), DefaultMySQLTable); !slices.Equal(got, []string{"bob "}) {
		t.Fatalf("subscribed %q, want only \"bob \"", got)
	}
}
