package webhookserver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{"203.0.113.7", "198.51.100.0/24", "198.51.100.9/24", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"203.0.113.7/32", "198.51.100.0/24", "198.51.100.0/24", "2001:db8::/32"}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "tencent", "10.0.0.0/33", "1.2.3"} {
		if _, err := ParsePrefixes([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The filter answers 403 before the body is read, and believes X-Forwarded-For only from
// trusted proxies, hop by hop from the right.
func TestSourceFilter(t *testing.T) {
	tencent, _ := ParsePrefixes([]string{"203.0.113.0/24"})
	ingress, _ := ParsePrefixes([]string{"10.1.0.0/16"})
	tests := []struct {
		name      string
		filter    SourceFilter
		peer      string
		forwarded []string
		wantAdmit bool
	}{
		{name: "no allowlist admits anyone", peer: "192.0.2.1:4000", wantAdmit: true},
		{name: "a Tencent peer", filter: SourceFilter{Allowed: tencent}, peer: "203.0.113.5:4000", wantAdmit: true},
		{name: "another peer", filter: SourceFilter{Allowed: tencent}, peer: "192.0.2.1:4000"},
		{name: "Tencent behind the trusted Ingress", filter: SourceFilter{Allowed: tencent, TrustedProxies: ingress},
			peer: "10.1.2.3:4000", forwarded: []string{"203.0.113.5"}, wantAdmit: true},
		{name: "a stranger behind the trusted Ingress", filter: SourceFilter{Allowed: tencent, TrustedProxies: ingress},
			peer: "10.1.2.3:4000", forwarded: []string{"192.0.2.1"}},
		{name: "a stranger who wrote Tencent's address in the header himself", filter: SourceFilter{Allowed: tencent, TrustedProxies: ingress},
			peer: "10.1.2.3:4000", forwarded: []string{"203.0.113.5, 192.0.2.1"}},
		{name: "a header from an untrusted peer is ignored", filter: SourceFilter{Allowed: tencent},
			peer: "192.0.2.1:4000", forwarded: []string{"203.0.113.5"}},
		{name: "two trusted hops, as two headers", filter: SourceFilter{Allowed: tencent, TrustedProxies: ingress},
			peer: "10.1.2.3:4000", forwarded: []string{"203.0.113.5", "10.1.9.9"}, wantAdmit: true},
		{name: "an IPv4-mapped IPv6 peer", filter: SourceFilter{Allowed: tencent}, peer: "[::ffff:203.0.113.5]:4000", wantAdmit: true},
		{name: "a header that is no address", filter: SourceFilter{Allowed: tencent, TrustedProxies: ingress},
			peer: "10.1.2.3:4000", forwarded: []string{"tencent"}},
	}
	// Admitted callbacks go on to a store that fails at once: no API server listens.
	c, err := client.New(&rest.Config{Host: unreachableAPIServers(t)["connection refused"], Timeout: 10 * time.Second},
		client.Options{Scheme: testScheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(c, Options{Path: "/callback", SDKAppIDs: []string{"1400000000"}, MaxRequestSkew: time.Minute,
				MaxBodyBytes: 1 << 20, Namespace: "events", AllowUnsigned: true, MaxResourcesPerCallback: 4,
				StoreTimeout: 100 * time.Millisecond, Sources: tt.filter})
			if err != nil {
				t.Fatal(err)
			}
			body := &readTracker{Reader: bytes.NewReader(testenv.Fixture("after-add-subscriber.json"))}
			req := httptest.NewRequest(http.MethodPost, "/callback?SdkAppid=1400000000&CallbackCommand=OfficialAccount.CallbackAfterAddSubscriber", body)
			req.RemoteAddr = tt.peer
			for _, h := range tt.forwarded {
				req.Header.Add("X-Forwarded-For", h)
			}
			a := s.handle(httptest.NewRecorder(), req)
			forbidden := a.status == http.StatusForbidden && strings.Contains(a.info, "--allowed-source-cidrs")
			if forbidden == tt.wantAdmit {
				t.Fatalf("answer %d %q, want admitted = %v", a.status, a.info, tt.wantAdmit)
			}
			if forbidden && body.read {
				t.Fatal("the body was read before the source was refused")
			}
		})
	}
}

// readTracker records whether anything read the body.
type readTracker struct {
	*bytes.Reader
	read bool
}

func (r *readTracker) Read(p []byte) (int, error) {
	r.read = true
	return r.Reader.Read(p)
}
