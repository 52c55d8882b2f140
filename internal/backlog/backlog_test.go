package backlog

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestCountRoundTrip(t *testing.T) {
	want := Count{Pending: 49999, CountedAt: time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)}
	var cm corev1.ConfigMap
	want.Into(&cm)
	got, err := From(&cm)
	if err != nil {
		t.Fatal(err)
	}
	if got.Pending != want.Pending || !got.CountedAt.Equal(want.CountedAt) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for name, data := range map[string]map[string]string{
		"empty":            {},
		"negative":         {keyPending: "-1", keyCountedAt: "2026-12-01T10:00:00Z"},
		"no time":          {keyPending: "3"},
		"not a number":     {keyPending: "many", keyCountedAt: "2026-12-01T10:00:00Z"},
		"not an RFC 3339 ": {keyPending: "3", keyCountedAt: "yesterday"},
	} {
		if _, err := From(&corev1.ConfigMap{Data: data}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
