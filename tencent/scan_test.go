package tencent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chat-operators/officialaccount-operator/internal/fakerest"
)

const (
	testApp     = 1400000000
	testAdmin   = "administrator"
	testKey     = "test-secret-key"
	testAccount = "@TOA#_news"
)

// standIn is Tencent's REST API for one app, with an account of n subscribers.
func standIn(t *testing.T, n int) (*fakerest.Server, *httptest.Server) {
	t.Helper()
	fake := fakerest.New(testApp, testAdmin, testKey)
	members := make([]fakerest.Subscriber, n)
	for i := range members {
		members[i] = fakerest.Subscriber{Account: fmt.Sprintf("user-%04d", i), SubscribeTime: time.Unix(1698821747, 0)}
	}
	fake.SetSubscribers(testAccount, members)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return fake, srv
}

func scannerFor(url, key string) *Scanner {
	client := &Client{Endpoint: url, SDKAppID: testApp, Identifier: testAdmin, SecretKey: key, HTTP: &http.Client{Timeout: 5 * time.Second}}
	return &Scanner{Client: client, Pace: time.Millisecond, Backoff: func(int) time.Duration { return 10 * time.Millisecond }}
}

func TestScanPagesWithNext(t *testing.T) {
	fake, srv := standIn(t, 1050)
	scan, err := scannerFor(srv.URL, testKey).Subscribers(context.Background(), testAccount)
	if err != nil {
		t.Fatal(err)
	}
	if len(scan.Subscribers) != 1050 || scan.SubscriberNum != 1050 || scan.Pages != 6 || scan.Calls != 6 || fake.Calls() != 6 {
		t.Fatalf("%d subscribers of %d in %d pages, %d calls (server counted %d)", len(scan.Subscribers), scan.SubscriberNum,
			scan.Pages, scan.Calls, fake.Calls())
	}
	if scan.Subscribers[1049].Account != "user-1049" || scan.Subscribers[0].SubscribeTime != 1698821747 {
		t.Fatalf("last %+v, first %+v", scan.Subscribers[1049], scan.Subscribers[0])
	}
}

func TestScanRetriesWhatALaterCallMayPass(t *testing.T) {
	fake, srv := standIn(t, 450)
	fake.FailNext(60018, 60007, 10004, 20005)
	scan, err := scannerFor(srv.URL, testKey).Subscribers(context.Background(), testAccount)
	if err != nil {
		t.Fatal(err)
	}
	if len(scan.Subscribers) != 450 || scan.Calls != 3+4 {
		t.Fatalf("%d subscribers in %d calls", len(scan.Subscribers), scan.Calls)
	}
}

// Tencent's own limit (200 calls/s here 2/s) is met by backing off, not by failing.
func TestScanKeepsUnderTheRateLimit(t *testing.T) {
	fake, srv := standIn(t, 1050)
	fake.RateLimit = 2
	s := scannerFor(srv.URL, testKey)
	s.Backoff = func(int) time.Duration { return 200 * time.Millisecond }
	s.Attempts = 20
	scan, err := s.Subscribers(context.Background(), testAccount)
	if err != nil {
		t.Fatal(err)
	}
	if len(scan.Subscribers) != 1050 || scan.Calls <= 6 {
		t.Fatalf("%d subscribers in %d calls: the limit was never met", len(scan.Subscribers), scan.Calls)
	}
}

func TestScanGivesUpOnWhatRetryingCannotMend(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		account  string
		wantCode int
	}{
		{name: "wrong secret key", key: "wrong", account: testAccount, wantCode: 70009},
		{name: "account gone", key: testKey, account: "@TOA#_gone", wantCode: 130004},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srv := standIn(t, 10)
			_, err := scannerFor(srv.URL, tt.key).Subscribers(context.Background(), tt.account)
			var tencentErr *Error
			if !errors.As(err, &tencentErr) || tencentErr.Code != tt.wantCode {
				t.Fatalf("error %v, want Tencent's %d", err, tt.wantCode)
			}
			if fake.Calls() != 1 {
				t.Fatalf("%d calls: retried what cannot pass", fake.Calls())
			}
		})
	}
}

// A listing whose count never matches Tencent's (members came and went while it paged)
// is not trusted.
func TestScanDistrustsAnInconsistentListing(t *testing.T) {
	fake, srv := standIn(t, 10)
	fake.SetSubscribers(testAccount, append(make([]fakerest.Subscriber, 0), fakerest.Subscriber{Account: "a"}, fakerest.Subscriber{Account: "a"}))
	_, err := scannerFor(srv.URL, testKey).Subscribers(context.Background(), testAccount)
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("error %v, want ErrInconsistent", err)
	}
}
