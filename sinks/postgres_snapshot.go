package sinks

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// A snapshot (a resync's listing of an account's subscribers at time T, stored in parts)
// is applied only once every part has arrived, never from a partial one: the parts wait
// in a table of their own, and the delivery of the last one applies them all in one
// transaction:
//   - a listed subscriber is subscribed, unless the row has an event newer than T;
//   - a row of the account marked subscribed by an event older than T that the snapshot
//     does not list is unsubscribed: its Unsubscribe callback was lost.
// A row changed after T is left alone either way. A snapshot no newer than the last one
// applied to the account changes nothing (<table>_accounts keeps T per account), so that
// an old snapshot retried after a newer one cannot undo it. A part delivered again with
// other subscribers (a resync retried after a crash) adds them to the part's.
//
// An AccountDestroyed event unsubscribes every row of the account with an older event, in
// one statement, and is recorded in <table>_accounts too: neither an older snapshot nor an
// older Subscribe or Unsubscribe (retries come in any order) changes any row of the
// account afterwards, whether the member has a row or not (postgres.go). A newer event
// still wins.
//
// Every write of one account's snapshots and destruction holds an advisory lock on the
// account, so that two parts delivered at once cannot both miss the other, and a
// snapshot and the account's destruction are applied in turn.

// snapshotPartsTable is the table where a postgres sink keeps snapshot parts until the
// snapshot is complete: the sink's table name with "_snapshot_parts".
func (p *Postgres) snapshotPartsTable() string { return p.besideTable("_snapshot_parts") }

// accountsTable is the table of each account's last snapshot and destruction applied:
// the sink's table name with "_accounts".
func (p *Postgres) accountsTable() string { return p.besideTable("_accounts") }

func (p *Postgres) besideTable(suffix string) string {
	name := append(pgx.Identifier(nil), p.table...)
	name[len(name)-1] += suffix
	return name.Sanitize()
}

// PostgresSnapshotPartsDDL is the table of snapshot parts a postgres sink keeps beside
// table.
func PostgresSnapshotPartsDDL(partsTable string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  snapshot_id      text        NOT NULL,
  part             integer     NOT NULL,
  parts            integer     NOT NULL,
  sdk_app_id       text        NOT NULL,
  official_account text        NOT NULL,
  snapshot_time    timestamptz NOT NULL,
  subscribers      text[]      NOT NULL,
  PRIMARY KEY (snapshot_id, part)
)`, partsTable)
}

// PostgresAccountsDDL is the table of each account's last snapshot time and destruction
// time a postgres sink keeps beside its table.
func PostgresAccountsDDL(accountsTable string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  sdk_app_id       text        NOT NULL,
  official_account text        NOT NULL,
  snapshot_time    timestamptz,
  destroyed_time   timestamptz,
  PRIMARY KEY (sdk_app_id, official_account)
)`, accountsTable)
}

// Seeds of the advisory locks on an account: its snapshots and destruction hold the
// account lock alone; its destruction also holds the destruction lock alone, which its
// Subscribe and Unsubscribe events hold shared (they do not wait for one another, nor for
// a snapshot).
const (
	accountLockSeed     = 0
	destructionLockSeed = 1
)

// accountLock is the text an account's advisory locks hash. The app is digits, so no two
// accounts share it.
func accountLock(spec v1alpha1.OfficialAccountSubscriptionSpec) string {
	return spec.SDKAppID + ":" + spec.OfficialAccount
}

// inAccountTx runs apply in a transaction that holds the account's advisory lock. The
// rollback of a transaction that did not commit has its own deadline.
func (p *Postgres) inAccountTx(ctx context.Context, spec v1alpha1.OfficialAccountSubscriptionSpec, apply func(pgx.Tx) error) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return classifyPostgresError(err)
	}
	defer func() {
		rollbackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
		defer cancel()
		_ = tx.Rollback(rollbackCtx)
	}()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", accountLock(spec), accountLockSeed); err != nil {
		return classifyPostgresError(err)
	}
	if err := apply(tx); err != nil {
		return err
	}
	return classifyPostgresError(tx.Commit(ctx))
}

// deliverSnapshotPart keeps one part and, when it completes its snapshot, applies it.
func (p *Postgres) deliverSnapshotPart(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	spec, snap := event.Spec, event.Spec.Snapshot
	if snap == nil {
		return Permanent(fmt.Errorf("a Snapshot event without spec.snapshot"))
	}
	parts := p.snapshotPartsTable()
	return p.inAccountTx(ctx, spec, func(tx pgx.Tx) error {
		var superseded bool
		err := tx.QueryRow(ctx, fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM %s WHERE sdk_app_id = $1 AND official_account = $2
  AND (snapshot_time >= to_timestamp($3::bigint / 1000.0) OR destroyed_time >= to_timestamp($3::bigint / 1000.0)))`, p.accountsTable()),
			spec.SDKAppID, spec.OfficialAccount, spec.EventTime).Scan(&superseded)
		if err != nil || superseded {
			return classifyPostgresError(err) // a newer snapshot or the destruction was applied: this one changes nothing
		}
		_, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %[1]s AS p (snapshot_id, part, parts, sdk_app_id, official_account, snapshot_time, subscribers)
VALUES ($1, $2, $3, $4, $5, to_timestamp($6::bigint / 1000.0), COALESCE($7::text[], '{}'))
ON CONFLICT (snapshot_id, part) DO UPDATE
SET subscribers = ARRAY(SELECT DISTINCT unnest(p.subscribers || EXCLUDED.subscribers))`, parts),
			snap.ID, snap.Part, snap.Parts, spec.SDKAppID, spec.OfficialAccount, spec.EventTime, spec.Subscribers)
		if err != nil {
			return classifyPostgresError(err)
		}
		var have int32
		if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE snapshot_id = $1", parts), snap.ID).Scan(&have); err != nil {
			return classifyPostgresError(err)
		}
		if have < snap.Parts {
			return nil
		}
		return p.applySnapshot(ctx, tx, event)
	})
}

// applySnapshot applies a complete snapshot in tx, records its time, and drops its parts
// and those of older snapshots of the account that never completed.
func (p *Postgres) applySnapshot(ctx context.Context, tx pgx.Tx, event *v1alpha1.OfficialAccountSubscription) error {
	spec, snap := event.Spec, event.Spec.Snapshot
	table, parts := p.table.Sanitize(), p.snapshotPartsTable()
	listed := fmt.Sprintf("SELECT DISTINCT unnest(subscribers) FROM %s WHERE snapshot_id = $1", parts)
	args := []any{snap.ID, spec.SDKAppID, spec.OfficialAccount, spec.EventTime}
	return execAll(ctx, tx, []statement{
		{fmt.Sprintf(`INSERT INTO %[1]s AS t
  (sdk_app_id, official_account, subscriber, subscribed, event_time, operator, event_id, updated_at)
SELECT $2, $3, s, true, to_timestamp($4::bigint / 1000.0), '', $1, now() FROM (%[2]s) AS listed(s)
ON CONFLICT (sdk_app_id, official_account, subscriber) DO UPDATE
SET subscribed = true, event_time = EXCLUDED.event_time, operator = '', event_id = EXCLUDED.event_id, updated_at = now()
WHERE t.event_time < EXCLUDED.event_time`, table, listed), args},
		{fmt.Sprintf(`UPDATE %[1]s SET subscribed = false, event_time = to_timestamp($4::bigint / 1000.0), operator = '', event_id = $1, updated_at = now()
WHERE sdk_app_id = $2 AND official_account = $3 AND subscribed AND event_time < to_timestamp($4::bigint / 1000.0)
  AND subscriber NOT IN (%[2]s)`, table, listed), args},
		{fmt.Sprintf(`DELETE FROM %s WHERE (snapshot_id = $1 OR snapshot_time < to_timestamp($4::bigint / 1000.0))
  AND sdk_app_id = $2 AND official_account = $3`, parts), args},
		{fmt.Sprintf(`INSERT INTO %s AS a (sdk_app_id, official_account, snapshot_time) VALUES ($1, $2, to_timestamp($3::bigint / 1000.0))
ON CONFLICT (sdk_app_id, official_account) DO UPDATE SET snapshot_time = GREATEST(a.snapshot_time, EXCLUDED.snapshot_time)`, p.accountsTable()),
			[]any{spec.SDKAppID, spec.OfficialAccount, spec.EventTime}},
	})
}

// statement is one SQL statement with its arguments.
type statement struct {
	sql  string
	args []any
}

// execAll runs the statements in tx, in order.
func execAll(ctx context.Context, tx pgx.Tx, statements []statement) error {
	for _, stmt := range statements {
		if _, err := tx.Exec(ctx, stmt.sql, stmt.args...); err != nil {
			return classifyPostgresError(err)
		}
	}
	return nil
}

// deliverDestroyed unsubscribes every row of the account older than the event, and
// records the destruction.
func (p *Postgres) deliverDestroyed(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	spec := event.Spec
	return p.inAccountTx(ctx, spec, func(tx pgx.Tx) error {
		return execAll(ctx, tx, []statement{
			{"SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", []any{accountLock(spec), destructionLockSeed}},
			{fmt.Sprintf(`UPDATE %s SET subscribed = false, event_time = to_timestamp($3::bigint / 1000.0), operator = $4, event_id = $5, updated_at = now()
WHERE sdk_app_id = $1 AND official_account = $2 AND subscribed AND event_time < to_timestamp($3::bigint / 1000.0)`, p.table.Sanitize()),
				[]any{spec.SDKAppID, spec.OfficialAccount, spec.EventTime, spec.OwnerAccount, event.Name}},
			{fmt.Sprintf(`INSERT INTO %s AS a (sdk_app_id, official_account, destroyed_time) VALUES ($1, $2, to_timestamp($3::bigint / 1000.0))
ON CONFLICT (sdk_app_id, official_account) DO UPDATE SET destroyed_time = GREATEST(a.destroyed_time, EXCLUDED.destroyed_time)`, p.accountsTable()),
				[]any{spec.SDKAppID, spec.OfficialAccount, spec.EventTime}},
		})
	})
}
