package delivery

import (
	"slices"
	"testing"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

func TestRematch(t *testing.T) {
	delivered := v1alpha1.SinkDelivery{Name: "a", State: v1alpha1.DeliveryDelivered, Attempts: 1}
	failedHere := v1alpha1.SinkDelivery{Name: "b", State: v1alpha1.DeliveryFailed, Attempts: 3, LastError: "503"}
	failedGone := v1alpha1.SinkDelivery{Name: "gone", State: v1alpha1.DeliveryFailed, Attempts: 1, LastError: "does not exist"}
	pending := func(name string) v1alpha1.SinkDelivery {
		return v1alpha1.SinkDelivery{Name: name, State: v1alpha1.DeliveryPending}
	}
	tests := []struct {
		name     string
		before   []v1alpha1.SinkDelivery
		matching []string
		want     []v1alpha1.SinkDelivery
		reset    []string
	}{
		{name: "an event that matched no sink goes to those that match now",
			matching: []string{"new"}, want: []v1alpha1.SinkDelivery{pending("new")}},
		{name: "a failed delivery starts a new round, keeping its last error",
			before: []v1alpha1.SinkDelivery{failedHere}, matching: []string{"b"},
			want: []v1alpha1.SinkDelivery{{Name: "b", State: v1alpha1.DeliveryPending, LastError: "503"}}, reset: []string{"b"}},
		{name: "a failed delivery to a deleted sink is replaced by the sinks that match now",
			before: []v1alpha1.SinkDelivery{failedGone}, matching: []string{"new"}, want: []v1alpha1.SinkDelivery{pending("new")}},
		{name: "a delivered one stays delivered, even if its sink no longer matches",
			before: []v1alpha1.SinkDelivery{delivered}, want: []v1alpha1.SinkDelivery{delivered}},
		{name: "nothing matching, nothing failed: unchanged",
			before: []v1alpha1.SinkDelivery{delivered, pending("c")}, matching: []string{"a", "c"},
			want: []v1alpha1.SinkDelivery{delivered, pending("c")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reset := rematch(tt.before, tt.matching)
			if !slices.Equal(reset, tt.reset) {
				t.Fatalf("reset %v, want %v", reset, tt.reset)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i].Name != tt.want[i].Name || got[i].State != tt.want[i].State ||
					got[i].Attempts != tt.want[i].Attempts || got[i].LastError != tt.want[i].LastError {
					t.Fatalf("delivery %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}
