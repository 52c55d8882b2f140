package webhookserver

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// Through a server's life, readiness and accepting connections go separate ways: ready only
// while it can store and is not stopping, but accepting until the drain period is over.
func TestTheServerDrainsBeforeItStops(t *testing.T) {
	// The API server never answers, so stores fail with 503, but each request is accepted
	// and answered; a mapper that knows the kind makes the server storable at once.
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(v1alpha1.GroupVersion.WithKind("OfficialAccountSubscription"), meta.RESTScopeNamespace)
	c, err := client.New(&rest.Config{Host: unreachableAPIServers(t)["never answers"], Timeout: 10 * time.Second},
		client.Options{Scheme: testScheme(t), Mapper: mapper})
	if err != nil {
		t.Fatal(err)
	}
	const drain = 500 * time.Millisecond
	s, err := New(c, Options{Path: "/callback", SDKAppIDs: []string{"1400000000"}, MaxRequestSkew: time.Minute,
		MaxBodyBytes: 1 << 20, Namespace: "events", AllowUnsigned: true, MaxResourcesPerCallback: 4, StoreTimeout: 100 * time.Millisecond, DrainPeriod: drain})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReadyCheck(nil); err == nil {
		t.Fatal("ready before listening")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/callback?SdkAppid=1400000000&CallbackCommand=OfficialAccount.CallbackAfterAddSubscriber"
	post := func() error {
		resp, err := http.Post(url, "application/json", bytes.NewReader(testenv.Fixture("after-add-subscriber.json")))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	waitFor(t, func() bool { return s.ReadyCheck(nil) == nil }, "ready once listening and storable")

	stopped := time.Now()
	stop()
	waitFor(t, func() bool { return s.ReadyCheck(nil) != nil }, "not ready once stopping")
	for time.Since(stopped) < drain*8/10 {
		if err := post(); err != nil {
			t.Fatalf("a callback %s into the drain period was not accepted: %v", time.Since(stopped), err)
		}
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if took := time.Since(stopped); took < drain {
		t.Fatalf("stopped after %s, before the drain period of %s", took, drain)
	}
	if err := post(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("after the drain a callback got %v, want connection refused", err)
	}
}

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting: " + what)
		}
	}
}
