package sinks

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

func startPostgres(t *testing.T) *testenv.Postgres {
	t.Helper()
	pg, err := testenv.StartPostgres()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Destroy)
	return pg
}

func pgEvent(name string, action v1alpha1.Action, eventTime int64, subscribers ...string) *v1alpha1.OfficialAccountSubscription {
	command := "OfficialAccount.CallbackAfterAddSubscriber"
	if action == v1alpha1.ActionUnsubscribe {
		command = "OfficialAccount.CallbackAfterDeleteSubscriber"
	}
	return &v1alpha1.OfficialAccountSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.OfficialAccountSubscriptionSpec{SDKAppID: "1400000000", CallbackCommand: command, Action: action,
			OfficialAccount: "@TOA#_test_for_penn", OperatorAccount: "107867", Subscribers: subscribers,
			SubscriberCount: int32(len(subscribers)), EventTime: eventTime},
	}
}

// connect opens a connection of the test's own to look at the table.
func connect(t *testing.T, pg *testenv.Postgres) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pg.DSN(pg.Password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// newPostgresSink is a sink on pg's default table that the test closes.
func newPostgresSink(t *testing.T, pg *testenv.Postgres) *Postgres {
	t.Helper()
	sink, err := NewPostgres(pg.DSN(pg.Password), "", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	return sink
}

type row struct {
	Subscribed bool
	EventID    string
	UpdatedAt  time.Time
}

func readRow(t *testing.T, conn *pgx.Conn, subscriber string) row {
	t.Helper()
	var r row
	err := conn.QueryRow(context.Background(), `SELECT subscribed, event_id, updated_at FROM officialaccount_subscribers
		WHERE sdk_app_id = '1400000000' AND official_account = '@TOA#_test_for_penn' AND subscriber = $1`, subscriber).
		Scan(&r.Subscribed, &r.EventID, &r.UpdatedAt)
	if err != nil {
		t.Fatalf("reading %s's row: %v", subscriber, err)
	}
	return r
}

func TestPostgresKeepsTheLatestStateWhateverTheOrder(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	subscribe := pgEvent("oasub-sub", v1alpha1.ActionSubscribe, 1670574414123, "jared", "leckie")
	unsubscribe := pgEvent("oasub-unsub", v1alpha1.ActionUnsubscribe, 1670574499000, "jared")
	orders := map[string][]*v1alpha1.OfficialAccountSubscription{
		"in order":              {subscribe, unsubscribe},
		"reversed":              {unsubscribe, subscribe},
		"with a repeat":         {subscribe, unsubscribe, subscribe},
		"unsubscribe, repeated": {unsubscribe, unsubscribe, subscribe},
	}
	for name, events := range orders {
		t.Run(name, func(t *testing.T) {
			table := "t_" + strings.ReplaceAll(name, " ", "_")
			table = strings.NewReplacer(",", "").Replace(table)
			sink, err := NewPostgres(pg.DSN(pg.Password), table, true, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			for _, e := range events {
				if err := sink.Deliver(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			conn, err := pgx.Connect(ctx, pg.DSN(pg.Password))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var jared, leckie bool
			q := fmt.Sprintf("SELECT subscribed FROM %s WHERE subscriber = $1", table)
			if err := conn.QueryRow(ctx, q, "jared").Scan(&jared); err != nil {
				t.Fatal(err)
			}
			if err := conn.QueryRow(ctx, q, "leckie").Scan(&leckie); err != nil {
				t.Fatal(err)
			}
			if jared || !leckie {
				t.Fatalf("jared subscribed=%v (want false: unsubscribed last), leckie subscribed=%v (want true)", jared, leckie)
			}
		})
	}
}

func TestPostgresARepeatedEventChangesNothing(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	sink := newPostgresSink(t, pg)
	event := pgEvent("oasub-once", v1alpha1.ActionSubscribe, 1670574414123, "jared")
	if err := sink.Deliver(ctx, event); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, pg)
	before := readRow(t, conn, "jared")
	if err := sink.Deliver(ctx, event); err != nil {
		t.Fatal(err)
	}
	if after := readRow(t, conn, "jared"); after != before {
		t.Fatalf("the repeat changed the row: %+v -> %+v", before, after)
	}
	if before.EventID != "oasub-once" || !before.Subscribed {
		t.Fatalf("row %+v", before)
	}
}

func TestPostgresWritesAllSubscribersOfAnEventInOneTransaction(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	sink := newPostgresSink(t, pg)
	subscribers := make([]string, 100)
	for i := range subscribers {
		subscribers[i] = fmt.Sprintf("user-%03d", i)
	}
	if err := sink.Deliver(ctx, pgEvent("oasub-hundred", v1alpha1.ActionSubscribe, 1670574414123, subscribers...)); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, pg)
	var rows, transactions int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT xmin::text) FROM officialaccount_subscribers`).Scan(&rows, &transactions); err != nil {
		t.Fatal(err)
	}
	if rows != 100 || transactions != 1 {
		t.Fatalf("%d rows written by %d transactions, want 100 by 1", rows, transactions)
	}
}

func TestPostgresDownThenUpIsRetried(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	sink := newPostgresSink(t, pg)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	err := sink.Deliver(ctx, pgEvent("oasub-down", v1alpha1.ActionSubscribe, 1, "jared"))
	if err == nil || IsPermanent(err) {
		t.Fatalf("with the database down: err = %v, want a transient error", err)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Deliver(ctx, pgEvent("oasub-down", v1alpha1.ActionSubscribe, 1, "jared")); err != nil {
		t.Fatalf("after the database came back: %v", err)
	}
}

// A database that holds a delivery (here: another session keeps the table locked) ends it
// within the sink's timeout, as an error worth retrying, and the lock's holder is not
// kept waiting on a statement nobody waits for.
func TestPostgresADeliveryWaitingOnALockEndsWithinTheTimeout(t *testing.T) {
	pg := startPostgres(t)
	ctx := context.Background()
	// The tables and a first row are made by a sink with time to spare: on a loaded
	// machine, connecting and creating them can take longer than the timeout under test.
	setup, err := NewPostgres(pg.DSN(pg.Password), "", true, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	err = setup.Deliver(ctx, pgEvent("oasub-before", v1alpha1.ActionSubscribe, 1, "jared"))
	setup.Close()
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 500 * time.Millisecond
	sink, err := NewPostgres(pg.DSN(pg.Password), "", true, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	locker := connect(t, pg)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE "+DefaultPostgresTable+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- sink.Deliver(ctx, pgEvent("oasub-locked", v1alpha1.ActionSubscribe, 2, "jared")) }()
	select {
	case err := <-done:
		if err == nil || IsPermanent(err) {
			t.Fatalf("a delivery blocked by a lock: err = %v, want a transient error", err)
		}
	case <-time.After(time.Minute): // far beyond the timeout: only a missing deadline gets here
		t.Fatal("the delivery is still waiting on the lock: it has no deadline")
	}
}

func TestPostgresAWrongPasswordIsRetriedWithAReadableError(t *testing.T) {
	pg := startPostgres(t)
	sink, err := NewPostgres(pg.DSN("not-the-password"), "", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	for name, attempt := range map[string]func() error{
		"check": func() error { return sink.Check(context.Background()) },
		"deliver": func() error {
			return sink.Deliver(context.Background(), pgEvent("oasub-pw", v1alpha1.ActionSubscribe, 1, "jared"))
		},
	} {
		err := attempt()
		if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "refused the credentials") || !strings.Contains(err.Error(), "28P01") {
			t.Errorf("%s: err = %v, want a credentials error to retry", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "not-the-password") {
			t.Errorf("%s: the error reveals the password", name)
		}
	}
}

func TestPostgresCheckWithoutTheTable(t *testing.T) {
	pg := startPostgres(t)
	sink, err := NewPostgres(pg.DSN(pg.Password), "missing_table", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if err := sink.Check(context.Background()); !IsPermanent(err) || !strings.Contains(err.Error(), "missing_table") {
		t.Fatalf("err = %v, want a permanent error naming the table", err)
	}
	created, _ := NewPostgres(pg.DSN(pg.Password), "created_table", true, 0)
	defer created.Close()
	if err := created.Check(context.Background()); err != nil {
		t.Fatalf("with createTable: %v", err)
	}
}

func TestNewPostgresDoesNotQuoteTheDSN(t *testing.T) {
	_, err := NewPostgres("postgres://u:hunter2@[::1:5432/db", "", true, 0)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}
