package leanclient

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

func event(name string) *v1alpha1.OfficialAccountSubscription {
	return &v1alpha1.OfficialAccountSubscription{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"kept": "yes"}},
		Spec: v1alpha1.OfficialAccountSubscriptionSpec{SDKAppID: "1400000000", CallbackCommand: "OfficialAccount.CallbackAfterAddSubscriber",
			Action: v1alpha1.ActionSubscribe, OfficialAccount: "@TOA#_lean", OperatorAccount: "107867", Subscribers: []string{"jared"},
			SubscriberCount: 1, EventTime: 1670574414123, ReceivedTime: metav1.Now()},
	}
}

// startAPIServer starts an API server for the test and returns what a lean client is
// made of: its config, the scheme, the HTTP client, and a typed client over them.
func startAPIServer(t *testing.T) (*rest.Config, *runtime.Scheme, *http.Client, client.WithWatch) {
	cfg, _ := testenv.StartForTest(t, testenv.NewEnvironment())
	scheme := testScheme(t)
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	typed, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme, HTTPClient: httpClient})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, scheme, httpClient, typed
}

func testScheme(t testing.TB) *runtime.Scheme {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return scheme
}

// The lean writes against a real API server: what they set on the object, what they store,
// and that their errors are the typed client's.
func TestLeanWrites(t *testing.T) {
	cfg, scheme, httpClient, typed := startAPIServer(t)
	lean, err := Wrap(typed, cfg, httpClient, scheme)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("create sets what the server set", func(t *testing.T) {
		sub := event("created")
		if err := lean.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		var stored v1alpha1.OfficialAccountSubscription
		if err := typed.Get(ctx, client.ObjectKeyFromObject(sub), &stored); err != nil {
			t.Fatal(err)
		}
		if sub.UID != stored.UID || sub.ResourceVersion != stored.ResourceVersion || sub.Generation != stored.Generation ||
			!sub.CreationTimestamp.Equal(&stored.CreationTimestamp) || sub.UID == "" {
			t.Fatalf("metadata after create: %+v, stored %+v", sub.ObjectMeta, stored.ObjectMeta)
		}
		if stored.Labels["kept"] != "yes" || stored.Spec.OfficialAccount != "@TOA#_lean" {
			t.Fatalf("stored: %+v", stored)
		}
	})

	t.Run("status update stores the status and the new resourceVersion", func(t *testing.T) {
		sub := event("updated")
		if err := lean.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		created := sub.ResourceVersion
		sub.Status.ObservedGeneration = sub.Generation
		sub.Status.Sinks = []v1alpha1.SinkDelivery{{Name: "http", State: v1alpha1.DeliveryDelivered, Attempts: 1}}
		if err := lean.Status().Update(ctx, sub); err != nil {
			t.Fatal(err)
		}
		var stored v1alpha1.OfficialAccountSubscription
		if err := typed.Get(ctx, client.ObjectKeyFromObject(sub), &stored); err != nil {
			t.Fatal(err)
		}
		if sub.ResourceVersion == created || sub.ResourceVersion != stored.ResourceVersion {
			t.Fatalf("resourceVersion after the update %q, before %q, stored %q", sub.ResourceVersion, created, stored.ResourceVersion)
		}
		if len(stored.Status.Sinks) != 1 || stored.Status.Sinks[0].State != v1alpha1.DeliveryDelivered {
			t.Fatalf("stored status: %+v", stored.Status)
		}
	})

	stale := event("stale")
	if err := lean.Create(ctx, stale); err != nil {
		t.Fatal(err)
	}
	staleCopy := stale.DeepCopy()
	if err := lean.Status().Update(ctx, stale); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		write func() error
		is    func(error) bool
		says  string // in the error's message: the API server's own
	}{
		{"create of an existing event", func() error { return lean.Create(ctx, event("created")) }, apierrors.IsAlreadyExists, `"created" already exists`},
		{"create of an invalid event", func() error {
			bad := event("invalid")
			bad.Spec.Action = "Resubscribe"
			return lean.Create(ctx, bad)
		}, apierrors.IsInvalid, "spec.action"},
		{"status update from a stale copy", func() error { return lean.Status().Update(ctx, staleCopy) }, apierrors.IsConflict, "the object has been modified"},
		{"status update of a missing event", func() error { return lean.Status().Update(ctx, event("missing")) }, apierrors.IsNotFound, `"missing" not found`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.write()
			if !tt.is(err) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("error %v (%T), want one that says %q", err, err, tt.says)
			}
		})
	}

	t.Run("other objects go to the wrapped client", func(t *testing.T) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "default"}}
		if err := lean.Create(ctx, cm); err != nil || cm.UID == "" {
			t.Fatalf("create of a ConfigMap: %v, uid %q", err, cm.UID)
		}
	})
}
