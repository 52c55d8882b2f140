package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a throwaway redis-server on a free loopback port, with a password so that a
// wrong one is refused as in production. `make test` installs Debian's redis-server where
// it is missing.
type Redis struct {
	Port     int
	Password string
	dir      string
	serverProcess
}

// StartRedis starts a server that the test stops at its end.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	port, err := FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	r := &Redis{Port: port, Password: "test-password-0", dir: t.TempDir()}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// URL connects with the given password.
func (r *Redis) URL(password string) string {
	return fmt.Sprintf("redis://:%s@127.0.0.1:%d/0", password, r.Port)
}

// Start runs the server and waits until it answers a PING: one still reading its
// append-only file back takes connections but answers LOADING. Its append-only file is
// written at every command, so that a server killed and started again keeps its data, as a
// production Redis with persistence does.
func (r *Redis) Start() error {
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port),
		"--requirepass", r.Password, "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server (make test installs Debian's redis-server): %w", err)
	}
	client := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.Port), Password: r.Password,
		DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		err := client.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("redis-server did not answer on port %d within 30 s: %w", r.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
