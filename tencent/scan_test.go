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
	return &Scanner{Client: client, Limiter: NewLimiter(time.Millisecond), Backoff: func(int) time.Duration { return 10 * time.Millisecond }}
}

func TestScanPagesWithNext(t *testing.T) {
	fake, srv := standIn(t, 1050)
	scan, err := scannerFor(srv.URL, testKey).Subscribers(context.Background(), testAccount)
	if err != nil {
		t.Fatal(err)
	}
	// Two passes of 6 pages each.
	if len(scan.Subscribers) != 1050 || scan.SubscriberNum != 1050 || scan.Pages != 12 || scan.Calls != 12 || fake.Calls() != 12 {
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
	if len(scan.Subscribers) != 450 || scan.Calls != 2*3+4 {
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

// A member one pass missed is still listed, even where a member who left during the pass
// made its count match Tencent's.
func TestScanKeepsAMemberOnePassMissed(t *testing.T) {
	fake, srv := standIn(t, 450)
	fake.MissOnce(testAccount, "user-0300")
	fake.AfterCall = func(calls int) {
		if calls == 1 {
			fake.Unsubscribe(testAccount, "user-0010") // listed on the first page already
		}
	}
	scan, err := scannerFor(srv.URL, testKey).Subscribers(context.Background(), testAccount)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range scan.Subscribers {
		found = found || s.Account == "user-0300"
	}
	if !found || len(scan.Subscribers) != 450 { // user-0010 too: the first pass saw them
		t.Fatalf("%d subscribers, user-0300 listed: %v", len(scan.Subscribers), found)
	}
}

// Scanners that share a limiter share its pace: Tencent counts an app's calls together.
func TestScannersShareTheirAppsPace(t *testing.T) {
	fake, srv := standIn(t, 1050)
	const pace = 20 * time.Millisecond
	limiter := NewLimiter(pace)
	start := time.Now()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			s := scannerFor(srv.URL, testKey)
			s.Limiter = limiter
			_, err := s.Subscribers(context.Background(), testAccount)
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// A rate limit sets a least duration, which no slow machine can undercut.
	if calls, took := fake.Calls(), time.Since(start); calls != 24 || took < time.Duration(calls-1)*pace {
		t.Fatalf("%d calls in %s: faster than one per %s", calls, took, pace)
	}
}
