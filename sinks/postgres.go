package sinks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// DefaultPostgresTable is the table a postgres sink keeps when it names none.
const DefaultPostgresTable = "officialaccount_subscribers"

// DefaultPostgresTimeout applies when a sink sets none.
const DefaultPostgresTimeout = 10 * time.Second

// Postgres keeps one row per (sdk_app_id, official_account, subscriber) in step with the
// events: Subscribe sets subscribed, Unsubscribe clears it, and only an event newer than
// the row's and than the account's destruction changes it, so late and repeated events
// never undo a newer one. A complete
// Snapshot makes the account's rows match it (postgres_snapshot.go).
type Postgres struct {
	pool        *pgxpool.Pool
	table       pgx.Identifier
	createTable bool
	timeout     time.Duration
	tables      *setupOnce
}

// NewPostgres makes a sink with its own connection pool; it connects on first use. Every
// delivery and check ends within timeout (DefaultPostgresTimeout when 0), so that a
// database that hangs holds a delivery no longer than an HTTP sink that does.
func NewPostgres(dsn, table string, createTable bool, timeout time.Duration) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included: say only what is wrong.
		return nil, errors.New("the connection string is not a valid libpq DSN or URL")
	}
	cfg.MaxConns = 4
	if timeout <= 0 {
		timeout = DefaultPostgresTimeout
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = timeout
	}
	// The server ends a statement that waits too long (on a lock, say) by itself, so that
	// it does not go on holding locks after the client gave up.
	if _, set := cfg.ConnConfig.RuntimeParams["statement_timeout"]; !set {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(timeout.Milliseconds(), 10)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	if table == "" {
		table = DefaultPostgresTable
	}
	return &Postgres{pool: pool, table: pgx.Identifier(strings.Split(table, ".")), createTable: createTable, timeout: timeout,
		tables: newSetupOnce()}, nil
}

// Close closes the pool.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

// Check tells whether deliveries can succeed: the database answers, takes the
// credentials, has the table (creating it if asked to) and lets the user write it.
func (p *Postgres) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	table := p.table.Sanitize()
	if err := p.ensureTable(ctx, table); err != nil {
		return err
	}
	var canWrite bool
	err := p.pool.QueryRow(ctx, "SELECT has_table_privilege($1, 'INSERT, UPDATE')", table).Scan(&canWrite)
	if err != nil {
		return classifyPostgresError(err)
	}
	if !canWrite {
		return Permanent(fmt.Errorf("PostgreSQL: the user may not INSERT and UPDATE %s", table))
	}
	return nil
}

// PostgresTableDDL is the table a postgres sink keeps.
func PostgresTableDDL(table string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
  sdk_app_id       text        NOT NULL,
  official_account text        NOT NULL,
  subscriber       text        NOT NULL,
  subscribed       boolean     NOT NULL,
  event_time       timestamptz NOT NULL,
  operator         text        NOT NULL,
  event_id         text        NOT NULL,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (sdk_app_id, official_account, subscriber)
)`, table)
}

// Deliver applies the event to every subscriber's row in one statement: one transaction,
// one round trip, however many subscribers.
func (p *Postgres) Deliver(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	table := p.table.Sanitize()
	if err := p.ensureTable(ctx, table); err != nil {
		return err
	}
	switch event.Spec.Action {
	case v1alpha1.ActionSnapshot:
		return p.deliverSnapshotPart(ctx, event)
	case v1alpha1.ActionAccountDestroyed:
		return p.deliverDestroyed(ctx, event)
	}
	return p.deliverChange(ctx, event)
}

// deliverChange applies a Subscribe or Unsubscribe: an event no newer than its row's, or
// than the account's destruction, changes nothing. Retries are not ordered, so a Subscribe
// older than an AccountDestroyed already applied may still come; it must not subscribe a
// member of the destroyed account. The event holds the account's destruction lock shared
// (deliverDestroyed holds it alone), so that the statement sees a destruction applied at
// the same time, or the destruction sees its rows: the lock and the statement are one batch,
// one implicit transaction, one round trip.
func (p *Postgres) deliverChange(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	upsert := fmt.Sprintf(`INSERT INTO %[1]s AS t
  (sdk_app_id, official_account, subscriber, subscribed, event_time, operator, event_id, updated_at)
SELECT $1, $2, s, $3, to_timestamp($4::bigint / 1000.0), $5, $6, now()
FROM (SELECT DISTINCT unnest($7::text[]) AS s) AS subscribers
WHERE NOT EXISTS (SELECT 1 FROM %[2]s AS a WHERE a.sdk_app_id = $1 AND a.official_account = $2
  AND a.destroyed_time >= to_timestamp($4::bigint / 1000.0))
ON CONFLICT (sdk_app_id, official_account, subscriber) DO UPDATE
SET subscribed = EXCLUDED.subscribed, event_time = EXCLUDED.event_time, operator = EXCLUDED.operator,
    event_id = EXCLUDED.event_id, updated_at = now()
WHERE t.event_time < EXCLUDED.event_time`, p.table.Sanitize(), p.accountsTable())
	spec := event.Spec
	batch := &pgx.Batch{}
	batch.Queue("SELECT pg_advisory_xact_lock_shared(hashtextextended($1, $2))", accountLock(spec), destructionLockSeed)
	batch.Queue(upsert, spec.SDKAppID, spec.OfficialAccount, spec.Action == v1alpha1.ActionSubscribe,
		spec.EventTime, spec.OperatorAccount, event.Name, spec.Subscribers)
	return classifyPostgresError(p.pool.SendBatch(ctx, batch).Close())
}

// ensureTable creates the tables once, if asked to. One delivery creates them; the others
// wait for it, each no longer than its own deadline.
func (p *Postgres) ensureTable(ctx context.Context, table string) error {
	if !p.createTable {
		return nil
	}
	return p.tables.Do(ctx, "PostgreSQL's tables to be created", func(ctx context.Context) error {
		for _, ddl := range []string{PostgresTableDDL(table), PostgresSnapshotPartsDDL(p.snapshotPartsTable()), PostgresAccountsDDL(p.accountsTable())} {
			if _, err := p.pool.Exec(ctx, ddl); err != nil {
				return classifyPostgresError(err)
			}
		}
		return nil
	})
}

// classifyPostgresError fails for good what retrying cannot mend (rights, a missing
// database or table) and retries the rest: connection losses, serialization failures,
// deadlocks, a server starting up, and refused credentials, which are nearly always a
// password being rotated, not the event.
func classifyPostgresError(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "28": // invalid authorization specification, invalid password
			return fmt.Errorf("PostgreSQL refused the credentials: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
		case "3D", "42": // no such database; syntax or access rule violation
			return Permanent(fmt.Errorf("PostgreSQL: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code))
		}
		return fmt.Errorf("PostgreSQL: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	}
	return fmt.Errorf("PostgreSQL: %w", err)
}
