package sinks

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// Snapshots and destruction in a MySQL mirror follow the PostgreSQL sink's rules
// (postgres_snapshot.go): a snapshot is applied only once every part has arrived, in one
// transaction; it subscribes whom it lists and unsubscribes whom it does not, leaving a row
// changed after it alone; a snapshot no newer than the account's last one, or than its
// destruction, changes nothing; a part delivered again adds its subscribers. The parts
// wait in <table>_snapshot_parts, their subscribers in <table>_snapshot_subscribers (a row
// each: MySQL has no arrays). <table>_accounts keeps each account's last snapshot and
// destruction times, and its row is the account's lock.

// accountLockMode is how a transaction holds the account's row.
type accountLockMode int

const (
	// accountShared is for Subscribe and Unsubscribe: they do not wait for one another.
	accountShared accountLockMode = iota
	// accountExclusive is for snapshots and destruction: they wait for every other
	// transaction of the account, and those wait for them.
	accountExclusive
)

// mysqlAccount is an account's row, as locked.
type mysqlAccount struct {
	snapshotTime, destroyedTime sql.NullTime
}

func (a mysqlAccount) destroyedAtOrAfter(t time.Time) bool {
	return a.destroyedTime.Valid && !a.destroyedTime.Time.Before(t)
}

// supersedes tells whether a snapshot taken at t changes nothing: the account has a
// snapshot as new, or was destroyed since.
func (a mysqlAccount) supersedes(t time.Time) bool {
	return a.destroyedAtOrAfter(t) || (a.snapshotTime.Valid && !a.snapshotTime.Time.Before(t))
}

// inAccountTx runs apply in a transaction that first makes sure the account has a row and
// locks it. The exclusive lock is taken by the insert itself (ON DUPLICATE KEY UPDATE
// locks the row it finds exclusively), never by upgrading a shared one, which two
// transactions could both hold and both wait to upgrade.
func (m *MySQL) inAccountTx(ctx context.Context, spec v1alpha1.OfficialAccountSubscriptionSpec, mode accountLockMode,
	apply func(*sql.Tx, mysqlAccount) error) error {
	tx, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // after a commit, a no-op; the read and write timeouts bound it
	insert, lock := "INSERT IGNORE INTO %s (sdk_app_id, official_account) VALUES (?, ?)", "LOCK IN SHARE MODE"
	if mode == accountExclusive {
		insert, lock = "INSERT INTO %s (sdk_app_id, official_account) VALUES (?, ?) ON DUPLICATE KEY UPDATE sdk_app_id = sdk_app_id", "FOR UPDATE"
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(insert, m.table.accounts()), spec.SDKAppID, spec.OfficialAccount); err != nil {
		return classifyMySQLError(err)
	}
	var account mysqlAccount
	err = tx.QueryRowContext(ctx, "SELECT snapshot_time, destroyed_time FROM "+m.table.accounts()+
		" WHERE sdk_app_id = ? AND official_account = ? "+lock, spec.SDKAppID, spec.OfficialAccount).
		Scan(&account.snapshotTime, &account.destroyedTime)
	if err != nil {
		return classifyMySQLError(err)
	}
	if err := apply(tx, account); err != nil {
		return err
	}
	return classifyMySQLError(tx.Commit())
}

// mysqlExecAll runs the statements in tx, in order.
func mysqlExecAll(ctx context.Context, tx *sql.Tx, statements []statement) error {
	for _, stmt := range statements {
		if _, err := tx.ExecContext(ctx, stmt.sql, stmt.args...); err != nil {
			return classifyMySQLError(err)
		}
	}
	return nil
}

// deliverSnapshotPart keeps one part and, when it completes its snapshot, applies it.
func (m *MySQL) deliverSnapshotPart(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	spec, snap := event.Spec, event.Spec.Snapshot
	if snap == nil {
		return Permanent(fmt.Errorf("a Snapshot event without spec.snapshot"))
	}
	at := time.UnixMilli(spec.EventTime).UTC()
	t := m.table
	return m.inAccountTx(ctx, spec, accountExclusive, func(tx *sql.Tx, account mysqlAccount) error {
		if account.supersedes(at) {
			return nil
		}
		statements := []statement{{`INSERT INTO ` + t.snapshotParts() + ` (snapshot_id, part, parts, sdk_app_id, official_account, snapshot_time)
VALUES (?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE parts = VALUES(parts)`,
			[]any{snap.ID, snap.Part, snap.Parts, spec.SDKAppID, spec.OfficialAccount, at}}}
		if len(spec.Subscribers) > 0 {
			args := make([]any, 0, 2*len(spec.Subscribers))
			for _, s := range spec.Subscribers {
				args = append(args, snap.ID, s)
			}
			statements = append(statements, statement{`INSERT INTO ` + t.snapshotSubscribers() + ` (snapshot_id, subscriber) VALUES ` +
				strings.TrimSuffix(strings.Repeat("(?, ?), ", len(spec.Subscribers)), ", ") +
				` ON DUPLICATE KEY UPDATE subscriber = VALUES(subscriber)`, args})
		}
		if err := mysqlExecAll(ctx, tx, statements); err != nil {
			return err
		}
		var have int32
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+t.snapshotParts()+" WHERE snapshot_id = ?", snap.ID).Scan(&have); err != nil {
			return classifyMySQLError(err)
		}
		if have < snap.Parts {
			return nil
		}
		return m.applySnapshot(ctx, tx, event, at)
	})
}

// applySnapshot applies a complete snapshot in tx, records its time, and drops its parts
// and those of older snapshots of the account that never completed.
func (m *MySQL) applySnapshot(ctx context.Context, tx *sql.Tx, event *v1alpha1.OfficialAccountSubscription, at time.Time) error {
	spec, snap, t := event.Spec, event.Spec.Snapshot, m.table
	account := []any{spec.SDKAppID, spec.OfficialAccount}
	return mysqlExecAll(ctx, tx, append([]statement{
		{`INSERT INTO ` + t.subscribers() + `
  (sdk_app_id, official_account, subscriber, subscribed, event_time, operator, event_id, updated_at)
SELECT ?, ?, listed.subscriber, TRUE, ?, '', ?, UTC_TIMESTAMP(3) FROM ` + t.snapshotSubscribers() + ` AS listed
WHERE listed.snapshot_id = ? ORDER BY listed.subscriber
` + mysqlNewerWins, []any{spec.SDKAppID, spec.OfficialAccount, at, snap.ID, snap.ID}},
		{`UPDATE ` + t.subscribers() + ` SET subscribed = FALSE, operator = '', event_id = ?, updated_at = UTC_TIMESTAMP(3), event_time = ?
WHERE sdk_app_id = ? AND official_account = ? AND subscribed AND event_time < ?
  AND subscriber NOT IN (SELECT subscriber FROM ` + t.snapshotSubscribers() + ` WHERE snapshot_id = ?)`,
			[]any{snap.ID, at, spec.SDKAppID, spec.OfficialAccount, at, snap.ID}},
		{`UPDATE ` + t.accounts() + ` SET snapshot_time = ? WHERE sdk_app_id = ? AND official_account = ?`,
			append([]any{at}, account...)},
	}, m.dropPartsBefore(spec, snap.ID, at)...))
}

// dropPartsBefore deletes the account's snapshot parts (and their subscribers) older than
// at, which can no longer be applied, and those of the snapshot named applied.
func (m *MySQL) dropPartsBefore(spec v1alpha1.OfficialAccountSubscriptionSpec, applied string, at time.Time) []statement {
	t, args := m.table, []any{spec.SDKAppID, spec.OfficialAccount, applied, at}
	return []statement{
		// The parts first, by the account's index: scanning the subscribers first would lock
		// other accounts' rows.
		{`DELETE listed FROM ` + t.snapshotParts() + ` AS part STRAIGHT_JOIN ` + t.snapshotSubscribers() + ` AS listed
  ON listed.snapshot_id = part.snapshot_id
WHERE part.sdk_app_id = ? AND part.official_account = ? AND (part.snapshot_id = ? OR part.snapshot_time < ?)`, args},
		{`DELETE FROM ` + t.snapshotParts() + ` WHERE sdk_app_id = ? AND official_account = ? AND (snapshot_id = ? OR snapshot_time < ?)`, args},
	}
}

// deliverDestroyed unsubscribes every row of the account older than the event, and
// records the destruction.
func (m *MySQL) deliverDestroyed(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	spec := event.Spec
	at := time.UnixMilli(spec.EventTime).UTC()
	return m.inAccountTx(ctx, spec, accountExclusive, func(tx *sql.Tx, account mysqlAccount) error {
		if account.destroyedAtOrAfter(at) {
			return nil
		}
		return mysqlExecAll(ctx, tx, append([]statement{
			{`UPDATE ` + m.table.subscribers() + ` SET subscribed = FALSE, operator = ?, event_id = ?, updated_at = UTC_TIMESTAMP(3), event_time = ?
WHERE sdk_app_id = ? AND official_account = ? AND subscribed AND event_time < ?`,
				[]any{spec.OwnerAccount, event.Name, at, spec.SDKAppID, spec.OfficialAccount, at}},
			{`UPDATE ` + m.table.accounts() + ` SET destroyed_time = ? WHERE sdk_app_id = ? AND official_account = ?`,
				[]any{at, spec.SDKAppID, spec.OfficialAccount}},
		}, m.dropPartsBefore(spec, "", at)...))
	})
}
