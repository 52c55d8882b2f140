package sinks

import (
	"testing"
	"time"
)

// endsWithin runs deliver against a server that never answers and fails the test unless it
// ends within limit with an error to retry. limit is well above the sink's timeout: only a
// call without a deadline, which would wait for as long as the server is stopped, misses it.
func endsWithin(t *testing.T, limit time.Duration, deliver func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- deliver() }()
	select {
	case err := <-done:
		if err == nil || IsPermanent(err) {
			t.Fatalf("a server that never answers: err = %v, want a timeout to retry", err)
		}
	case <-time.After(limit):
		t.Fatalf("the delivery did not end within %s", limit)
	}
}
