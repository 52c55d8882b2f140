package sinks

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func TestRedacted(t *testing.T) {
	tests := []struct{ address, want string }{
		{"https://crm.example.com/hooks/tencent", "https://crm.example.com/hooks/tencent"},
		{"https://user:s3cret@crm.example.com/hooks?token=t0ken#frag", "https://crm.example.com/hooks"},
		{"https://crm.example.com/hooks?", "https://crm.example.com/hooks"},
		{"nats://a:s3cret@n1:4222, nats://n2:4222?x=t0ken", "nats://n1:4222,nats://n2:4222"},
		{"http://[::1]:namedport/x?token=t0ken", "(a URL that does not parse)"},
	}
	for _, tt := range tests {
		if got := Redacted(tt.address); got != tt.want {
			t.Errorf("Redacted(%q) = %q, want %q", tt.address, got, tt.want)
		}
	}
}

// An error of the HTTP sink, which its status and Events show, names the URL without its
// userinfo or query string: refused, answered with an error, or redirected.
func TestHTTPErrorsCarryNoCredentials(t *testing.T) {
	srv, _, _ := record(t, http.StatusInternalServerError, nil)
	redirecting, _, _ := record(t, http.StatusFound, http.Header{"Location": {"https://login.example.com/?session=t0ken"}})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String()
	closed.Close()
	for name, base := range map[string]string{"refused": refused, "answered 500": srv.URL, "redirected": redirecting.URL} {
		withCredentials := strings.Replace(base, "http://", "http://user:s3cret@", 1) + "/hooks?token=t0ken"
		sink, err := NewHTTP(&v1alpha1.HTTPDestination{URL: withCredentials}, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = sink.Deliver(context.Background(), sampleEvent())
		if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "t0ken") ||
			strings.Contains(err.Error(), "user@") {
			t.Errorf("%s: error %v, want one without the URL's credentials", name, err)
		}
		if err != nil && !strings.Contains(err.Error(), strings.TrimPrefix(base, "http://")) {
			t.Errorf("%s: error %v, want it to name the host", name, err)
		}
	}
}

// An error of the NATS sink names the servers without their credentials, even when the
// URL does not parse.
func TestNATSErrorsCarryNoCredentials(t *testing.T) {
	_, err := NewNATS("nats://user:s3cret@127.0.0.1:notaport/?token=t0ken", NATSCredentials{}, "", true, false)
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "t0ken") ||
		!strings.Contains(err.Error(), "invalid port") {
		t.Fatalf("error %v, want one that says what is wrong without the URL's credentials", err)
	}
}
