package operator

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// countingMapper counts the look-ups that reach it.
type countingMapper struct {
	meta.RESTMapper
	asked int
}

func (c *countingMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	c.asked++
	return c.RESTMapper.RESTMapping(gk, versions...)
}

func TestRememberingMapper(t *testing.T) {
	events := schema.GroupVersionKind{Group: "officialaccount.chat-operators.dev", Version: "v1alpha1", Kind: "OfficialAccountSubscription"}
	later := schema.GroupVersionKind{Group: "example.dev", Version: "v1", Kind: "Later"}
	tests := []struct {
		name      string
		lookups   []schema.GroupVersionKind
		versions  int // versions per look-up: 1, or 2 with an unknown one first
		installed []schema.GroupVersionKind
		wantAsked int
		wantErr   bool
	}{
		{"a mapping found once is remembered", []schema.GroupVersionKind{events, events, events}, 1, nil, 1, false},
		{"kinds are remembered apart", []schema.GroupVersionKind{events, later, events, later}, 1, []schema.GroupVersionKind{later}, 2, false},
		{"a failed look-up is asked again", []schema.GroupVersionKind{later, later}, 1, nil, 2, true},
		{"a look-up of several versions is passed on", []schema.GroupVersionKind{events, events}, 2, nil, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			known := meta.NewDefaultRESTMapper(nil)
			for _, gvk := range append([]schema.GroupVersionKind{events}, tt.installed...) {
				known.Add(gvk, meta.RESTScopeNamespace)
			}
			counting := &countingMapper{RESTMapper: known}
			m := &rememberingMapper{RESTMapper: counting}
			for _, gvk := range tt.lookups {
				versions := []string{gvk.Version}
				if tt.versions == 2 {
					versions = []string{"v9", gvk.Version}
				}
				mapping, err := m.RESTMapping(gvk.GroupKind(), versions...)
				if (err != nil) != tt.wantErr {
					t.Fatalf("%s: error %v", gvk, err)
				}
				if err == nil && (mapping.GroupVersionKind != gvk || mapping.Scope.Name() != meta.RESTScopeNameNamespace) {
					t.Fatalf("%s: mapping %+v", gvk, mapping)
				}
			}
			if counting.asked != tt.wantAsked {
				t.Fatalf("the dynamic mapper was asked %d times, want %d", counting.asked, tt.wantAsked)
			}
		})
	}
}
