package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Postgres is a throwaway PostgreSQL cluster on a free loopback port, with password
// authentication so that a wrong password is refused as in production.
type Postgres struct {
	bin, dir, data string
	Port           int
	Password       string
	runAs          string // PostgreSQL refuses to run as root: then it runs as this user
}

// StartPostgres creates and starts a cluster with Debian's PostgreSQL binaries (`make
// test` installs them where they are missing).
func StartPostgres() (*Postgres, error) {
	bin, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "officialaccount-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{bin: bin, dir: dir, data: filepath.Join(dir, "data"), Password: "test-password-0"}
	if os.Geteuid() == 0 {
		p.runAs = "postgres"
		if _, err := user.Lookup(p.runAs); err != nil {
			p.runAs = "nobody"
		}
		if err := p.chownToRunAs(dir); err != nil {
			return nil, err
		}
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(p.Password+"\n"), 0o644); err != nil {
		return nil, err
	}
	if out, err := p.run("initdb", "-D", p.data, "-U", "postgres", "--pwfile", pwfile,
		"--auth=scram-sha-256", "--no-sync", "-E", "UTF8"); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if p.Port, err = FreeLoopbackPort(); err != nil {
		return nil, err
	}
	return p, p.Start()
}

// DSN connects as the superuser with the given password.
func (p *Postgres) DSN(password string) string {
	return fmt.Sprintf("postgres://postgres:%s@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", password, p.Port)
}

// Start starts the server (again).
func (p *Postgres) Start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", p.Port, p.dir)
	if out, err := p.run("pg_ctl", "-D", p.data, "-o", opts, "-l", filepath.Join(p.dir, "log"), "-w", "start"); err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s", err, out)
	}
	return nil
}

// Stop stops the server, dropping its connections.
func (p *Postgres) Stop() error {
	if out, err := p.run("pg_ctl", "-D", p.data, "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Destroy stops the server and removes its files.
func (p *Postgres) Destroy() {
	_ = p.Stop()
	_ = os.RemoveAll(p.dir)
}

func (p *Postgres) run(tool string, args ...string) ([]byte, error) {
	path := filepath.Join(p.bin, tool)
	if p.runAs != "" {
		args = append([]string{"-u", p.runAs, "--", path}, args...)
		path = "runuser"
	}
	return exec.Command(path, args...).CombinedOutput()
}

func (p *Postgres) chownToRunAs(dir string) error {
	u, err := user.Lookup(p.runAs)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	return os.Chown(dir, uid, gid)
}

func postgresBinDir() (string, error) {
	if path, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			return filepath.Dir(real), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("no PostgreSQL server binaries (initdb): run the tests with `make test`, which installs Debian's postgresql")
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}

// FreeLoopbackPort is a TCP port on 127.0.0.1 that nothing listens on now.
func FreeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Freeze stops (SIGSTOP) the server and every backend: the kernel still accepts new
// connections, but nothing answers on them or on those already open, as with a server
// hung on its disk. Thaw resumes them.
func (p *Postgres) Freeze() error { return p.signalAll(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (p *Postgres) Thaw() error { return p.signalAll(syscall.SIGCONT) }

// signalAll signals the postmaster, then its children. The postmaster goes first: once it
// is stopped it forks no backend that the scan of its children could miss (a backend forked
// during the scan would serve its connection through a freeze).
func (p *Postgres) signalAll(sig syscall.Signal) error {
	pidFile, err := os.ReadFile(filepath.Join(p.data, "postmaster.pid"))
	if err != nil {
		return err
	}
	postmaster, err := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	if err != nil {
		return fmt.Errorf("postmaster.pid: %w", err)
	}
	if err := syscall.Kill(postmaster, sig); err != nil {
		return err
	}
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The parent's PID is the second field after the command, which is in parentheses.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(postmaster) {
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
	}
	return nil
}
