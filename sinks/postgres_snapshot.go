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
// A row changed after T is left alone either way. Parts of one snapshot take an advisory
// lock on its id, so that two parts delivered at once cannot both miss the other.

// snapshotPartsTable is the table where a postgres sink keeps snapshot parts until the
// snapshot is complete: the sink's table name with "_snapshot_parts".
func (p *Postgres) snapshotPartsTable() string {
	name := append(pgx.Identifier(nil), p.table...)
	name[len(name)-1] += "_snapshot_parts"
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

// deliverSnapshotPart keeps one part and, when it completes its snapshot, applies it.
func (p *Postgres) deliverSnapshotPart(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	spec, snap := event.Spec, event.Spec.Snapshot
	if snap == nil {
		return Permanent(fmt.Errorf("a Snapshot event without spec.snapshot"))
	}
	table, parts := p.table.Sanitize(), p.snapshotPartsTable()
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return classifyPostgresError(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", snap.ID); err != nil {
		return classifyPostgresError(err)
	}
	_, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (snapshot_id, part, parts, sdk_app_id, official_account, snapshot_time, subscribers)
VALUES ($1, $2, $3, $4, $5, to_timestamp($6::bigint / 1000.0), $7) ON CONFLICT (snapshot_id, part) DO NOTHING`, parts),
		snap.ID, snap.Part, snap.Parts, spec.SDKAppID, spec.OfficialAccount, spec.EventTime, spec.Subscribers)
	if err != nil {
		return classifyPostgresError(err)
	}
	var have int32
	if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE snapshot_id = $1", parts), snap.ID).Scan(&have); err != nil {
		return classifyPostgresError(err)
	}
	if have < snap.Parts {
		return classifyPostgresError(tx.Commit(ctx))
	}
	return p.applySnapshot(ctx, tx, event, table, parts)
}

// applySnapshot applies a complete snapshot in tx and drops its parts, and those of older
// snapshots of the account that never completed.
func (p *Postgres) applySnapshot(ctx context.Context, tx pgx.Tx, event *v1alpha1.OfficialAccountSubscription, table, parts string) error {
	spec, snap := event.Spec, event.Spec.Snapshot
	listed := fmt.Sprintf("SELECT DISTINCT unnest(subscribers) FROM %s WHERE snapshot_id = $1", parts)
	statements := []string{
		fmt.Sprintf(`INSERT INTO %[1]s AS t
  (sdk_app_id, official_account, subscriber, subscribed, event_time, operator, event_id, updated_at)
SELECT $2, $3, s, true, to_timestamp($4::bigint / 1000.0), '', $1, now() FROM (%[2]s) AS listed(s)
ON CONFLICT (sdk_app_id, official_account, subscriber) DO UPDATE
SET subscribed = true, event_time = EXCLUDED.event_time, operator = '', event_id = EXCLUDED.event_id, updated_at = now()
WHERE t.event_time < EXCLUDED.event_time`, table, listed),
		fmt.Sprintf(`UPDATE %[1]s SET subscribed = false, event_time = to_timestamp($4::bigint / 1000.0), operator = '', event_id = $1, updated_at = now()
WHERE sdk_app_id = $2 AND official_account = $3 AND subscribed AND event_time < to_timestamp($4::bigint / 1000.0)
  AND subscriber NOT IN (%[2]s)`, table, listed),
		fmt.Sprintf(`DELETE FROM %s WHERE (snapshot_id = $1 OR snapshot_time < to_timestamp($4::bigint / 1000.0))
  AND sdk_app_id = $2 AND official_account = $3`, parts),
	}
	for _, stmt := range statements {
		if _, err := tx.Exec(ctx, stmt, snap.ID, spec.SDKAppID, spec.OfficialAccount, spec.EventTime); err != nil {
			return classifyPostgresError(err)
		}
	}
	return classifyPostgresError(tx.Commit(ctx))
}
