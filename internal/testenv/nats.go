package testenv

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartNATS runs a real nats-server with JetStream, embedded in the test process, on a
// free loopback port. storeDir keeps JetStream's data across a restart; "" makes one.
func StartNATS(t testing.TB, storeDir string) *server.Server {
	t.Helper()
	if storeDir == "" {
		storeDir = t.TempDir()
	}
	return StartNATSWithOptions(t, &server.Options{JetStream: true, StoreDir: storeDir})
}

// StartNATSWithOptions runs a nats-server with opts, on loopback and a free port unless
// opts set one.
func StartNATSWithOptions(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host = "127.0.0.1"
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// RestartNATS starts a JetStream server on port again, with the data in storeDir.
func RestartNATS(t testing.TB, port int, storeDir string) *server.Server {
	t.Helper()
	return StartNATSWithOptions(t, &server.Options{JetStream: true, StoreDir: storeDir, Port: port})
}
