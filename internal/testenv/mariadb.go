package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MariaDB is a throwaway MariaDB server (Debian's mariadb-server, which `make test`
// installs where it is missing) on a free loopback port, with a user "oa" that logs in
// with a password, as in production, and a database "oa".
type MariaDB struct {
	Port     int
	Password string
	dir      string
	serverProcess
}

// mariadbInit runs at every start, with every privilege, before the server takes
// connections.
const mariadbInit = `CREATE USER IF NOT EXISTS 'oa'@'%%' IDENTIFIED BY '%s';
GRANT ALL ON *.* TO 'oa'@'%%' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS oa;
`

// StartMariaDB creates a data directory and starts a server that the test stops at its end.
func StartMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	port, err := FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	m := &MariaDB{Port: port, Password: "test-password-0", dir: t.TempDir()}
	install := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+m.data(), "--user="+currentUser(),
		"--auth-root-authentication-method=normal", "--skip-test-db",
		// Leave the system's files alone (run as root, the script would chown Debian's PAM
		// helper to root) and do not look the host's name up.
		"--rpm", "--skip-name-resolve")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db (make test installs Debian's mariadb-server): %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "init.sql"), fmt.Appendf(nil, mariadbInit, m.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

func (m *MariaDB) data() string { return filepath.Join(m.dir, "data") }

// currentUser is the user the server runs as: mariadbd runs as root only when told to.
func currentUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return strconv.Itoa(os.Geteuid())
}

// DSN connects as "oa" with the given password to the database "oa".
func (m *MariaDB) DSN(password string) string {
	return fmt.Sprintf("oa:%s@tcp(127.0.0.1:%d)/oa", password, m.Port)
}

// DB is a connection pool of the test's own, as "oa", closed at the test's end.
func (m *MariaDB) DB(t testing.TB) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(m.DSN(m.Password))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime, cfg.Loc, cfg.Timeout = true, time.UTC, 10*time.Second
	cfg.Params = map[string]string{"time_zone": "'+00:00'"}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// Start runs the server and waits until "oa" can log in. The server keeps its data across
// a kill: InnoDB writes its log at every commit.
func (m *MariaDB) Start() error {
	m.cmd = exec.Command(mariadbd(), "--no-defaults", "--user="+currentUser(), "--datadir="+m.data(),
		"--socket="+filepath.Join(m.dir, "sock"), "--pid-file="+filepath.Join(m.dir, "pid"),
		"--port="+strconv.Itoa(m.Port), "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin",
		"--init-file="+filepath.Join(m.dir, "init.sql"), "--log-error="+filepath.Join(m.dir, "error.log"),
		"--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=2",
		// Not strict by itself, as some servers are configured: the sink must make its
		// sessions strict.
		"--sql-mode=")
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("starting mariadbd (make test installs Debian's mariadb-server): %w", err)
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.Timeout = "oa", m.Password, "tcp", fmt.Sprintf("127.0.0.1:%d", m.Port), time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		err := db.PingContext(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			log, _ := os.ReadFile(filepath.Join(m.dir, "error.log"))
			return fmt.Errorf("mariadbd did not take connections on port %d within 60 s: %v\n%s", m.Port, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mariadbd is the server's binary: Debian puts it in /usr/sbin, which a user's PATH may lack.
func mariadbd() string {
	if path, err := exec.LookPath("mariadbd"); err == nil {
		return path
	}
	return "/usr/sbin/mariadbd"
}
