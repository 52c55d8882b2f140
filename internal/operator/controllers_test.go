package operator

import (
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// The manager's cache watches events lean, which knows one namespace and no selector: the
// manager's own options pass, and a cache configured otherwise is refused, not built.
func TestTheCacheWatchingEventsLeanRefusesWhatItsWatchWouldMiss(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:6443"}
	config := DefaultConfig()
	config.Webhook.Namespace = "officialaccount-system"
	managers := ManagerOptions(&Flags{Config: config}).Cache
	oneNamespace := map[string]cache.Config{"oa": {}}
	sdkApp := labels.SelectorFromSet(labels.Set{v1alpha1.LabelSDKAppID: "1400000000"})
	// The cache asks whether the kinds it selects by are namespaced; nothing here is served.
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("Secret"), meta.RESTScopeNamespace)
	eventsMetadata := &metav1.PartialObjectMetadata{}
	eventsMetadata.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("OfficialAccountSubscription"))
	for _, tt := range []struct {
		name    string
		options cache.Options
		refused string // in the error; "" if the cache is built
	}{
		{"the manager's options", managers, ""},
		{"all namespaces, as one", cache.Options{DefaultNamespaces: map[string]cache.Config{cache.AllNamespaces: {}}}, ""},
		{"two namespaces", cache.Options{DefaultNamespaces: map[string]cache.Config{"a": {}, "b": {}}}, "one namespace"},
		{"no namespace", cache.Options{}, "one namespace"},
		{"a default label selector", cache.Options{DefaultNamespaces: oneNamespace, DefaultLabelSelector: sdkApp}, "default selectors"},
		{"a default field selector", cache.Options{DefaultNamespaces: oneNamespace, DefaultFieldSelector: fields.Everything()}, "default selectors"},
		{"a selector of the namespace", cache.Options{DefaultNamespaces: map[string]cache.Config{"oa": {LabelSelector: sdkApp}}}, "the cache's namespace can have none"},
		{"a selector of events", cache.Options{DefaultNamespaces: oneNamespace,
			ByObject: map[client.Object]cache.ByObject{&v1alpha1.OfficialAccountSubscription{}: {Label: sdkApp}}}, "no ByObject entry for events"},
		{"a selector of events' metadata", cache.Options{DefaultNamespaces: oneNamespace,
			ByObject: map[client.Object]cache.ByObject{eventsMetadata: {Label: sdkApp}}}, "no ByObject entry for events"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.options
			opts.Scheme, opts.HTTPClient, opts.Mapper = NewScheme(), &http.Client{}, mapper
			built, err := newCacheWatchingEventsLean(cfg, opts)
			switch {
			case tt.refused == "" && (err != nil || built == nil):
				t.Fatalf("refused: %v", err)
			case tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused)):
				t.Fatalf("error %v, want one that says %q", err, tt.refused)
			}
		})
	}
}
