package webhookserver

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

func nowForTest() metav1.Time { return metav1.Now() }

// unreachableAPIServers are API servers that are down in the two ways that matter: nothing
// listens (connection refused), or something accepts and never answers (the deadline).
func unreachableAPIServers(t *testing.T) map[string]string {
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := refused.Addr().String()
	refused.Close()

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
		}
	}()
	return map[string]string{"connection refused": "http://" + refusedAddr, "never answers": "http://" + silent.Addr().String()}
}

// The answer is 503 FAIL, before Tencent gives up, and the store is reported to OnStore
// with how long it took.
func TestAnAPIServerThatIsDownGets503FailNeverOK(t *testing.T) {
	for name, host := range unreachableAPIServers(t) {
		t.Run(name, func(t *testing.T) {
			scheme := testScheme(t)
			c, err := client.New(&rest.Config{Host: host, Timeout: 10 * time.Second}, client.Options{Scheme: scheme})
			if err != nil {
				t.Fatal(err)
			}
			storeTimeout := 300 * time.Millisecond
			var reported []time.Duration
			s, err := New(c, Options{Path: "/callback", SDKAppIDs: []string{"1400000000"}, MaxRequestSkew: time.Minute,
				MaxBodyBytes: 1 << 20, Namespace: "events", AllowUnsigned: true, MaxResourcesPerCallback: 4, StoreTimeout: storeTimeout,
				OnStore: func(took time.Duration) { reported = append(reported, took) }})
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost,
				"/callback?SdkAppid=1400000000&CallbackCommand=OfficialAccount.CallbackAfterAddSubscriber",
				bytes.NewReader(testenv.Fixture("after-add-subscriber.json")))
			rec := httptest.NewRecorder()
			start := time.Now()
			s.ServeHTTP(rec, req)
			took := time.Since(start)

			var answer tencentAnswer
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
				t.Fatalf("answer is not JSON: %q", rec.Body.String())
			}
			if rec.Code != http.StatusServiceUnavailable || answer.ActionStatus != "FAIL" {
				t.Fatalf("got %d %+v, want 503 FAIL", rec.Code, answer)
			}
			if answer.ErrorInfo == "" {
				t.Fatal("FAIL without a reason")
			}
			// Tencent waits 2 s: the answer must come before, whatever the API server does.
			if took > 2*time.Second {
				t.Fatalf("answered after %s, past Tencent's 2 s", took)
			}
			// One store reported, as long as it took: the whole timeout where nothing answers.
			if len(reported) != 1 || reported[0] <= 0 || reported[0] > took || (name == "never answers" && reported[0] < storeTimeout) {
				t.Fatalf("stores reported %v for an answer after %s", reported, took)
			}
		})
	}
}

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}
