package sinks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

func TestClassifyHTTPStatus(t *testing.T) {
	tests := map[int]httpOutcome{
		200: httpDelivered, 201: httpDelivered, 202: httpDelivered, 204: httpDelivered, 299: httpDelivered,
		401: httpRetry, 403: httpRetry, 408: httpRetry, 425: httpRetry, 429: httpRetry, 500: httpRetry, 502: httpRetry, 503: httpRetry, 504: httpRetry,
		301: httpRedirected, 302: httpRedirected, 307: httpRedirected, 308: httpRedirected,
		400: httpRejected, 404: httpRejected, 409: httpRejected, 422: httpRejected,
	}
	for code, want := range tests {
		if got := classifyHTTPStatus(code); got != want {
			t.Errorf("classifyHTTPStatus(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{" 5 ", 5 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.value, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.value, got, tt.want)
		}
	}
}

func TestStandardWebhooksSignatureMatchesTheSpecificationVector(t *testing.T) {
	// The test vector published with the Standard Webhooks reference libraries.
	key, err := ParseSigningSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := standardWebhooksSignature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature = %s, want %s", got, want)
	}
}

func TestParseSigningSecret(t *testing.T) {
	for secret, wantErr := range map[string]bool{
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw":   false,
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n": false, // a Secret made with echo
		"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw":         true,
		"whsec_not base64!":                        true,
		"whsec_c2hvcnQ=":                           true, // "short"
	} {
		if _, err := ParseSigningSecret(secret); (err != nil) != wantErr {
			t.Errorf("ParseSigningSecret(%q): err = %v, want error %v", secret, err, wantErr)
		}
	}
}

func sampleEvent() *v1alpha1.OfficialAccountSubscription {
	return &v1alpha1.OfficialAccountSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: "oasub-0123456789abcdef01234567", Namespace: "events"},
		Spec: v1alpha1.OfficialAccountSubscriptionSpec{
			SDKAppID: "1400000000", CallbackCommand: "OfficialAccount.CallbackAfterAddSubscriber",
			Action: v1alpha1.ActionSubscribe, OfficialAccount: "@TOA#_test_for_penn", OperatorAccount: "107867",
			Subscribers: []string{"jared", "leckie"}, SubscriberCount: 2, EventTime: 1670574414123,
		},
	}
}

// record answers with status and headers and captures the request it got.
func record(t *testing.T, status int, header http.Header) (*httptest.Server, *http.Request, *[]byte) {
	var got http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = *r.Clone(context.Background())
		body = make([]byte, r.ContentLength)
		_, _ = r.Body.Read(body)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte("receiver says no"))
	}))
	t.Cleanup(srv.Close)
	return srv, &got, &body
}

func TestHTTPDeliverTencentFormatResendsTheOriginalBody(t *testing.T) {
	srv, _, body := record(t, http.StatusOK, nil)
	sink, err := NewHTTP(&v1alpha1.HTTPDestination{URL: srv.URL, Format: v1alpha1.HTTPFormatTencent}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Deliver(context.Background(), sampleEvent()); err != nil {
		t.Fatal(err)
	}
	var got, want any
	_ = json.Unmarshal(*body, &got)
	_ = json.Unmarshal(testenv.Fixture("after-add-subscriber.json"), &want)
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("body = %s\nwant the seed sample %s", gotJSON, wantJSON)
	}
}

func TestHTTPDeliverOutcomes(t *testing.T) {
	tests := []struct {
		name           string
		status         int
		header         http.Header
		wantErr        bool
		wantPermanent  bool
		wantRetryAfter time.Duration
	}{
		{name: "accepted", status: http.StatusAccepted},
		{name: "server error is retried", status: http.StatusBadGateway, wantErr: true},
		{name: "rate limit honours Retry-After", status: http.StatusTooManyRequests, header: http.Header{"Retry-After": {"7"}},
			wantErr: true, wantRetryAfter: 7 * time.Second},
		{name: "not found fails for good", status: http.StatusNotFound, wantErr: true, wantPermanent: true},
		{name: "a redirect is not followed and fails for good", status: http.StatusFound,
			header: http.Header{"Location": {"/login"}}, wantErr: true, wantPermanent: true},
		{name: "a permanent redirect too", status: http.StatusPermanentRedirect,
			header: http.Header{"Location": {"/moved"}}, wantErr: true, wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, req, _ := record(t, tt.status, tt.header)
			sink, err := NewHTTP(&v1alpha1.HTTPDestination{URL: srv.URL,
				Headers: map[string]string{"Authorization": "Bearer x", "ce-id": "overridden?"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = sink.Deliver(context.Background(), sampleEvent())
			if (err != nil) != tt.wantErr || IsPermanent(err) != tt.wantPermanent || RetryAfter(err) != tt.wantRetryAfter {
				t.Fatalf("err = %v (permanent %v, retry after %s)", err, IsPermanent(err), RetryAfter(err))
			}
			if location := tt.header.Get("Location"); location != "" && !strings.Contains(err.Error(), location) {
				t.Errorf("the error %q does not name the redirect's Location", err)
			}
			if req.Header.Get("Authorization") != "Bearer x" {
				t.Error("the sink's own header was not sent")
			}
			if req.Header.Get("ce-id") != sampleEvent().Name || req.Header.Get("Idempotency-Key") != sampleEvent().Name {
				t.Errorf("ce-id %q / Idempotency-Key %q: the event id must win over configured headers",
					req.Header.Get("ce-id"), req.Header.Get("Idempotency-Key"))
			}
		})
	}
}

func TestHTTPDeliverTransportErrorIsRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens any more
	sink, err := NewHTTP(&v1alpha1.HTTPDestination{URL: srv.URL, Timeout: &metav1.Duration{Duration: time.Second}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = sink.Deliver(context.Background(), sampleEvent())
	if err == nil || IsPermanent(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	if got := strings.Count(err.Error(), srv.URL); got != 1 {
		t.Fatalf("the error names the URL %d times, want once: %v", got, err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("the error does not say what went wrong: %v", err)
	}
}

func TestNewHTTPRejectsACABundleWithoutCertificates(t *testing.T) {
	if _, err := NewHTTP(&v1alpha1.HTTPDestination{URL: "https://example.invalid", CABundle: []byte("not PEM")}, nil); err == nil {
		t.Fatal("accepted a caBundle with no certificate")
	}
}

func TestHTTPDeliverTrustsTheCABundle(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	untrusting, _ := NewHTTP(&v1alpha1.HTTPDestination{URL: srv.URL}, nil)
	if err := untrusting.Deliver(context.Background(), sampleEvent()); err == nil {
		t.Fatal("delivered to a server with an unknown CA without a caBundle")
	}
	pem := pemOf(srv.Certificate().Raw)
	trusting, err := NewHTTP(&v1alpha1.HTTPDestination{URL: srv.URL, CABundle: pem}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := trusting.Deliver(context.Background(), sampleEvent()); err != nil {
		t.Fatalf("with the caBundle: %v", err)
	}
}

// A destroyed account goes out as Tencent sent it: Owner_Account and Name, no list.
func TestHTTPDeliverTencentFormatResendsADestroyedAccount(t *testing.T) {
	srv, got, body := record(t, http.StatusOK, nil)
	sink, err := NewHTTP(&v1alpha1.HTTPDestination{URL: srv.URL, Format: v1alpha1.HTTPFormatTencent}, nil)
	if err != nil {
		t.Fatal(err)
	}
	event := &v1alpha1.OfficialAccountSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: "oasub-destroyed"},
		Spec: v1alpha1.OfficialAccountSubscriptionSpec{SDKAppID: "1400000000", CallbackCommand: "OfficialAccount.CallbackAfterOfficialAccountDestroyed",
			Action: v1alpha1.ActionAccountDestroyed, OfficialAccount: "@TOA#_test_for_penn", OwnerAccount: "107867", AccountName: "penn",
			Subscribers: []string{}, EventTime: 1670574500000},
	}
	if err := sink.Deliver(context.Background(), event); err != nil {
		t.Fatal(err)
	}
	var gotBody, want any
	_ = json.Unmarshal(*body, &gotBody)
	_ = json.Unmarshal(testenv.Fixture("after-official-account-destroyed.json"), &want)
	gotJSON, _ := json.Marshal(gotBody)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("body = %s\nwant %s", gotJSON, wantJSON)
	}
	if got.Header.Get("Idempotency-Key") != "oasub-destroyed" {
		t.Fatalf("Idempotency-Key %q", got.Header.Get("Idempotency-Key"))
	}
}

// A snapshot's part says which part of which snapshot it is, so that a receiver of the
// Tencent format can assemble it.
func TestHTTPDeliverTencentFormatCarriesTheSnapshotsPlace(t *testing.T) {
	srv, _, body := record(t, http.StatusOK, nil)
	sink, err := NewHTTP(&v1alpha1.HTTPDestination{URL: srv.URL, Format: v1alpha1.HTTPFormatTencent}, nil)
	if err != nil {
		t.Fatal(err)
	}
	event := sampleEvent()
	event.Spec.Action, event.Spec.CallbackCommand, event.Spec.OperatorAccount = v1alpha1.ActionSnapshot, v1alpha1.CommandSnapshot, ""
	event.Spec.Snapshot = &v1alpha1.SnapshotPart{ID: "oasnap-1", Part: 2, Parts: 3, Subscribers: 1002}
	if err := sink.Deliver(context.Background(), event); err != nil {
		t.Fatal(err)
	}
	var got struct {
		CallbackCommand      string
		SubscribeAccountList []map[string]string
		Snapshot             struct {
			ID                         string
			Part, Parts, SubscriberNum int32
		}
	}
	if err := json.Unmarshal(*body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Snapshot.ID != "oasnap-1" || got.Snapshot.Part != 2 || got.Snapshot.Parts != 3 || got.Snapshot.SubscriberNum != 1002 ||
		len(got.SubscribeAccountList) != 2 || got.CallbackCommand != v1alpha1.CommandSnapshot {
		t.Fatalf("body %s", *body)
	}
}

// A dead letter tells the receiver what went wrong, in both formats, on one header line.
func TestHTTPDeliverMarksADeadLetter(t *testing.T) {
	letter := &DeadLetter{Sink: "crm", Reason: "Rejected", Error: "POST https://crm/: 400 Bad Request:\nno such field"}
	tests := []struct {
		format                v1alpha1.HTTPFormat
		sink, reason, errName string
	}{
		{v1alpha1.HTTPFormatCloudEvents, "ce-deadlettersink", "ce-deadletterreason", "ce-deadlettererror"},
		{v1alpha1.HTTPFormatTencent, "X-Deadletter-Sink", "X-Deadletter-Reason", "X-Deadletter-Error"},
	}
	for _, tt := range tests {
		t.Run(string(tt.format), func(t *testing.T) {
			srv, got, _ := record(t, http.StatusOK, nil)
			sink, err := NewHTTP(&v1alpha1.HTTPDestination{URL: srv.URL, Format: tt.format}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := sink.Deliver(WithDeadLetter(context.Background(), letter), sampleEvent()); err != nil {
				t.Fatal(err)
			}
			h := got.Header
			if h.Get(tt.sink) != "crm" || h.Get(tt.reason) != "Rejected" ||
				h.Get(tt.errName) != "POST https://crm/: 400 Bad Request: no such field" {
				t.Fatalf("headers %v: want the dead letter's sink, reason and error on one line", h)
			}
			if h.Get("Idempotency-Key") != "oasub-0123456789abcdef01234567/deadletter/crm" {
				t.Fatalf("Idempotency-Key %q: want one of the dead letter's own", h.Get("Idempotency-Key"))
			}
			if err := sink.Deliver(context.Background(), sampleEvent()); err != nil {
				t.Fatal(err)
			}
			if got.Header.Get(tt.sink) != "" {
				t.Fatal("a delivery that is no dead letter is marked as one")
			}
		})
	}
}

// A replay keeps the event's id, for receivers that drop repeats, and names the replay.
func TestHTTPDeliverNamesAReplay(t *testing.T) {
	tests := []struct {
		format v1alpha1.HTTPFormat
		header string
	}{
		{v1alpha1.HTTPFormatCloudEvents, "ce-replay"},
		{v1alpha1.HTTPFormatTencent, "X-Replay"},
	}
	for _, tt := range tests {
		t.Run(string(tt.format), func(t *testing.T) {
			srv, got, _ := record(t, http.StatusOK, nil)
			sink, err := NewHTTP(&v1alpha1.HTTPDestination{URL: srv.URL, Format: tt.format}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := sink.Deliver(WithReplay(context.Background(), "lost-by-crm"), sampleEvent()); err != nil {
				t.Fatal(err)
			}
			if got.Header.Get(tt.header) != "lost-by-crm" || got.Header.Get("Idempotency-Key") != "oasub-0123456789abcdef01234567" {
				t.Fatalf("headers %v: want the replay's name and the event's own Idempotency-Key", got.Header)
			}
			if err := sink.Deliver(context.Background(), sampleEvent()); err != nil {
				t.Fatal(err)
			}
			if got.Header.Get(tt.header) != "" {
				t.Fatal("a delivery that is no replay is marked as one")
			}
		})
	}
}
