package sinks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// DefaultMySQLTable and DefaultMySQLTimeout apply when a sink sets none.
const (
	DefaultMySQLTable   = "officialaccount_subscribers"
	DefaultMySQLTimeout = 10 * time.Second
)

// MySQL keeps one row per (sdk_app_id, official_account, subscriber) in step with the
// events, with the PostgreSQL sink's rules: Subscribe sets subscribed, Unsubscribe clears
// it, and only an event newer than the row's and than the account's destruction changes
// it, so late and repeated events never undo a newer one. A complete Snapshot makes the
// account's rows match it, and an AccountDestroyed unsubscribes them (mysql_snapshot.go).
// It works on MySQL 8 (TencentDB for MySQL, TDSQL-C) and on MariaDB.
//
// MySQL has no transaction-scoped advisory lock, so the account's row in <table>_accounts
// is the lock: a Subscribe or Unsubscribe holds it shared, a snapshot or a destruction
// holds it alone. Every transaction takes it first, then the subscribers' rows, so two
// of them never wait for each other in a circle over it.
type MySQL struct {
	db          *sql.DB
	table       mysqlTable
	createTable bool
	timeout     time.Duration

	tables *setupOnce
}

// NewMySQL makes a sink with its own connection pool on a go-sql-driver/mysql DSN; it
// connects on first use. Every delivery and check ends within timeout
// (DefaultMySQLTimeout when 0), which is also the connect, read and write timeout unless
// the DSN sets them.
func NewMySQL(dsn, table string, createTable bool, timeout time.Duration) (*MySQL, error) {
	if timeout <= 0 {
		timeout = DefaultMySQLTimeout
	}
	cfg, err := mysqlConfig(dsn, timeout)
	if err != nil {
		return nil, err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, errors.New("the DSN's settings are not valid (a collation, charset or TLS setting)")
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	// A connection dropped by a proxy or a failover is not kept for long.
	db.SetConnMaxLifetime(5 * time.Minute)
	if table == "" {
		table = DefaultMySQLTable
	}
	return &MySQL{db: db, table: newMySQLTable(table), createTable: createTable, timeout: timeout,
		tables: newSetupOnce()}, nil
}

// mysqlConfig is the DSN's configuration with the sink's settings where the DSN sets none.
func mysqlConfig(dsn string, timeout time.Duration) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		// The parser's message may quote the DSN, password included: say only what is wrong.
		return nil, errors.New("the DSN is not a valid go-sql-driver/mysql DSN (user:password@tcp(host:3306)/database)")
	}
	for _, t := range []*time.Duration{&cfg.Timeout, &cfg.ReadTimeout, &cfg.WriteTimeout} {
		if *t == 0 {
			*t = timeout
		}
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	setDefault := func(name, value string) {
		if _, set := cfg.Params[name]; !set {
			cfg.Params[name] = value
		}
	}
	// The server gives up waiting for a lock (1205, retried) before the sink gives up on the
	// delivery: a client that goes away does not end the server's wait, and the transaction
	// would go on holding the locks it has, the account's among them, for InnoDB's default
	// 50 s (a year for a table's metadata lock).
	lockWait := strconv.Itoa(int(max(time.Second, timeout/2) / time.Second))
	setDefault("innodb_lock_wait_timeout", lockWait)
	setDefault("lock_wait_timeout", lockWait)
	// A value too long for its column fails the statement instead of being cut short.
	setDefault("sql_mode", "CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')")
	// Event times are stored as UTC DATETIMEs, whatever the server's time zone.
	cfg.Loc, cfg.ParseTime = time.UTC, true
	cfg.Params["time_zone"] = "'+00:00'"
	// A primary demoted in a failover answers 1290: the driver drops that connection, and
	// the retry dials the new primary.
	cfg.RejectReadOnly = true
	// One round trip per statement, not three (prepare, execute, close).
	cfg.InterpolateParams = true
	cfg.Logger = mysqlDriverLog{}
	return cfg, nil
}

// Close closes the pool.
func (m *MySQL) Close() error { return m.db.Close() }

// mysqlDriverLog sends what the driver logs (a pooled connection found dead, say) to the
// operator's structured log, not to a line of its own on stderr.
type mysqlDriverLog struct{}

func (mysqlDriverLog) Print(v ...any) {
	log.Log.WithName("mysql-driver").Info(fmt.Sprint(v...))
}

// mysqlTable names the sink's table and those beside it, quoted.
type mysqlTable struct{ database, name string }

func newMySQLTable(qualified string) mysqlTable {
	if database, name, ok := strings.Cut(qualified, "."); ok {
		return mysqlTable{database: database, name: name}
	}
	return mysqlTable{name: qualified}
}

// with is the table named with suffix, quoted: the sink's own table for "".
func (t mysqlTable) with(suffix string) string {
	name := "`" + t.name + suffix + "`"
	if t.database != "" {
		return "`" + t.database + "`." + name
	}
	return name
}

func (t mysqlTable) subscribers() string         { return t.with("") }
func (t mysqlTable) accounts() string            { return t.with("_accounts") }
func (t mysqlTable) snapshotParts() string       { return t.with("_snapshot_parts") }
func (t mysqlTable) snapshotSubscribers() string { return t.with("_snapshot_subscribers") }

// MySQLTablesDDL creates the sink's table and those beside it. Identifiers compare as
// bytes, as Tencent's do, under collation: utf8mb4_0900_bin on MySQL 8, utf8mb4_nopad_bin
// on MariaDB (utf8mb4_bin ignores trailing spaces, which would make "bob" and "bob " one
// subscriber). The lengths are Tencent's limits.
func MySQLTablesDDL(table, collation string) []string { return newMySQLTable(table).ddl(collation) }

func (t mysqlTable) ddl(collation string) []string {
	options := " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=" + collation
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + t.subscribers() + ` (
  sdk_app_id       VARCHAR(20)  NOT NULL,
  official_account VARCHAR(48)  NOT NULL,
  subscriber       VARCHAR(32)  NOT NULL,
  subscribed       BOOLEAN      NOT NULL,
  event_time       DATETIME(3)  NOT NULL,
  operator         VARCHAR(32)  NOT NULL,
  event_id         VARCHAR(253) NOT NULL,
  updated_at       DATETIME(3)  NOT NULL,
  PRIMARY KEY (sdk_app_id, official_account, subscriber)
)` + options,
		`CREATE TABLE IF NOT EXISTS ` + t.accounts() + ` (
  sdk_app_id       VARCHAR(20) NOT NULL,
  official_account VARCHAR(48) NOT NULL,
  snapshot_time    DATETIME(3) NULL,
  destroyed_time   DATETIME(3) NULL,
  PRIMARY KEY (sdk_app_id, official_account)
)` + options,
		`CREATE TABLE IF NOT EXISTS ` + t.snapshotParts() + ` (
  snapshot_id      VARCHAR(63) NOT NULL,
  part             INT         NOT NULL,
  parts            INT         NOT NULL,
  sdk_app_id       VARCHAR(20) NOT NULL,
  official_account VARCHAR(48) NOT NULL,
  snapshot_time    DATETIME(3) NOT NULL,
  PRIMARY KEY (snapshot_id, part),
  KEY account (sdk_app_id, official_account)
)` + options,
		`CREATE TABLE IF NOT EXISTS ` + t.snapshotSubscribers() + ` (
  snapshot_id VARCHAR(63) NOT NULL,
  subscriber  VARCHAR(32) NOT NULL,
  PRIMARY KEY (snapshot_id, subscriber)
)` + options,
	}
}

// noPadCollation is the server's binary utf8mb4 collation that does not pad, or
// utf8mb4_bin on a server that has none (MySQL 5.7).
func (m *MySQL) noPadCollation(ctx context.Context) (string, error) {
	var name string
	err := m.db.QueryRowContext(ctx, `SELECT COLLATION_NAME FROM information_schema.COLLATIONS
WHERE COLLATION_NAME IN ('utf8mb4_0900_bin', 'utf8mb4_nopad_bin') ORDER BY COLLATION_NAME LIMIT 1`).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "utf8mb4_bin", nil
	}
	return name, classifyMySQLError(err)
}

// Check tells whether deliveries can succeed: the server answers, takes the credentials,
// has the tables (creating them if asked to) and lets the user write them as deliveries do.
// Each write it tries matches no row, in a transaction it rolls back, so it changes
// nothing, but MySQL checks the privileges first.
func (m *MySQL) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	if err := m.ensureTables(ctx); err != nil {
		return err
	}
	tx, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for _, probe := range m.table.privilegeProbes() {
		if _, err := tx.ExecContext(ctx, probe); err != nil {
			return classifyMySQLError(err)
		}
	}
	return nil
}

// privilegeProbes need the privileges deliveries use: INSERT and UPDATE (ON DUPLICATE KEY
// UPDATE) on every table, DELETE on the snapshot tables.
func (t mysqlTable) privilegeProbes() []string {
	var probes []string
	for _, table := range []struct{ name, key string }{{t.subscribers(), "sdk_app_id"}, {t.accounts(), "sdk_app_id"},
		{t.snapshotParts(), "snapshot_id"}, {t.snapshotSubscribers(), "snapshot_id"}} {
		probes = append(probes, "INSERT INTO "+table.name+" SELECT * FROM "+table.name+" WHERE FALSE",
			"UPDATE "+table.name+" SET "+table.key+" = "+table.key+" WHERE FALSE")
	}
	return append(probes, "DELETE FROM "+t.snapshotParts()+" WHERE FALSE", "DELETE FROM "+t.snapshotSubscribers()+" WHERE FALSE")
}

// begin starts a READ COMMITTED transaction, as PostgreSQL's: every read after the
// account's lock is a locking read or a statement's own, and REPEATABLE READ's gap locks
// would make neighbouring accounts wait for each other.
func (m *MySQL) begin(ctx context.Context) (*sql.Tx, error) {
	tx, err := m.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, classifyMySQLError(err)
	}
	return tx, nil
}

// Deliver applies the event in one transaction.
func (m *MySQL) Deliver(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	if year := time.UnixMilli(event.Spec.EventTime).UTC().Year(); year < 1000 || year > 9999 {
		return Permanent(fmt.Errorf("MySQL: the event time %d is outside DATETIME's years 1000 to 9999", event.Spec.EventTime))
	}
	if err := m.ensureTables(ctx); err != nil {
		return err
	}
	switch event.Spec.Action {
	case v1alpha1.ActionSnapshot:
		return m.deliverSnapshotPart(ctx, event)
	case v1alpha1.ActionAccountDestroyed:
		return m.deliverDestroyed(ctx, event)
	}
	return m.deliverChange(ctx, event)
}

// mysqlNewerWins is the ON DUPLICATE KEY UPDATE of a row: the inserted values replace the
// row's only if the event is newer. MySQL assigns left to right, each assignment seeing
// those before it, so event_time comes last: the others compare against the row's.
// VALUES() is deprecated in MySQL 8.0.20 in favour of a row alias, which MariaDB lacks.
const mysqlNewerWins = `ON DUPLICATE KEY UPDATE
  subscribed = IF(event_time < VALUES(event_time), VALUES(subscribed), subscribed),
  operator   = IF(event_time < VALUES(event_time), VALUES(operator), operator),
  event_id   = IF(event_time < VALUES(event_time), VALUES(event_id), event_id),
  updated_at = IF(event_time < VALUES(event_time), VALUES(updated_at), updated_at),
  event_time = GREATEST(event_time, VALUES(event_time))`

// deliverChange applies a Subscribe or Unsubscribe to every subscriber's row in one
// statement, unless the account was destroyed after the event: retries are not ordered,
// so a Subscribe older than an AccountDestroyed already applied may still come.
func (m *MySQL) deliverChange(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	spec := event.Spec
	subscribers := slices.Compact(slices.Sorted(slices.Values(spec.Subscribers))) // rows locked in one order: fewer deadlocks
	if len(subscribers) == 0 {
		return nil
	}
	eventTime := time.UnixMilli(spec.EventTime).UTC()
	return m.inAccountTx(ctx, spec, accountShared, func(tx *sql.Tx, account mysqlAccount) error {
		if account.destroyedAtOrAfter(eventTime) {
			return nil
		}
		rows := strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(3)), ", len(subscribers)), ", ")
		args := make([]any, 0, 7*len(subscribers))
		for _, s := range subscribers {
			args = append(args, spec.SDKAppID, spec.OfficialAccount, s, spec.Action == v1alpha1.ActionSubscribe,
				eventTime, spec.OperatorAccount, event.Name)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO `+m.table.subscribers()+`
  (sdk_app_id, official_account, subscriber, subscribed, event_time, operator, event_id, updated_at)
VALUES `+rows+"\n"+mysqlNewerWins, args...)
		return classifyMySQLError(err)
	})
}

// ensureTables creates the tables once, if asked to. One delivery creates them; the others
// wait for it, each no longer than its own deadline.
func (m *MySQL) ensureTables(ctx context.Context) error {
	if !m.createTable {
		return nil
	}
	return m.tables.Do(ctx, "MySQL's tables to be created", func(ctx context.Context) error {
		collation, err := m.noPadCollation(ctx)
		if err != nil {
			return err
		}
		for _, ddl := range m.table.ddl(collation) {
			if _, err := m.db.ExecContext(ctx, ddl); err != nil {
				return classifyMySQLError(err)
			}
		}
		return nil
	})
}

// classifyMySQLError fails for good what retrying cannot mend (privileges, a missing
// database or table, a value the table cannot hold) and retries the rest: connection
// losses, deadlocks (1213), lock wait timeouts (1205), a read-only server during a
// failover, and refused credentials, which are nearly always a password being rotated.
func classifyMySQLError(err error) error {
	if err == nil {
		return nil
	}
	var myErr *mysql.MySQLError
	if !errors.As(err, &myErr) {
		return fmt.Errorf("MySQL: %w", err)
	}
	switch myErr.Number {
	case 1045: // ER_ACCESS_DENIED_ERROR: a wrong user or password
		return fmt.Errorf("MySQL refused the credentials: %w", myErr)
	case 1044, 1142, 1143, 1227, // no privilege on the database, table, column, or for the operation
		1046, 1049, 1146, 1054, // no database chosen (the DSN names none); no such database, table or column
		1064, 1406, 1366, 1292, 1264, // a statement or a value the server does not take
		1665: // READ COMMITTED with binlog_format=STATEMENT: the server must log ROW or MIXED
		return Permanent(fmt.Errorf("MySQL: %w", myErr))
	}
	return fmt.Errorf("MySQL: %w", myErr)
}
