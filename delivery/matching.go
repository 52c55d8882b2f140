package delivery

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// sinkListTimeout bounds one live list of a namespace's sinks.
const sinkListTimeout = 10 * time.Second

// SinksAsOf lists a namespace's SubscriptionSinks as the API server has them at or after a
// given resourceVersion: the event's. The informer's cache may not have seen a sink created
// a moment before the event (the two watches run apart), and matching from it would mark
// the event "no matching sinks" and never deliver it. The list is answered from the API
// server's watch cache (resourceVersionMatch=NotOlderThan), not from etcd, and one list
// serves every event older than it: under load, one list serves a batch of events.
type SinksAsOf struct {
	Reader client.Reader

	mu     sync.Mutex
	latest map[string]sinkSnapshot // by namespace
}

type sinkSnapshot struct {
	resourceVersion string
	items           []v1alpha1.SubscriptionSink
}

// List returns the namespace's sinks at resourceVersion or later. Callers only read them.
func (s *SinksAsOf) List(ctx context.Context, namespace, resourceVersion string) ([]v1alpha1.SubscriptionSink, error) {
	s.mu.Lock()
	snap, ok := s.latest[namespace]
	s.mu.Unlock()
	if ok && resourceVersionAtLeast(snap.resourceVersion, resourceVersion) {
		return snap.items, nil
	}

	ctx, cancel := context.WithTimeout(ctx, sinkListTimeout)
	defer cancel()
	var list v1alpha1.SubscriptionSinkList
	err := s.Reader.List(ctx, &list, client.InNamespace(namespace), &client.ListOptions{Raw: &metav1.ListOptions{
		ResourceVersion: resourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}})
	if err != nil {
		return nil, fmt.Errorf("listing SubscriptionSinks: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.latest == nil {
		s.latest = map[string]sinkSnapshot{}
	}
	if cur, ok := s.latest[namespace]; !ok || !resourceVersionAtLeast(cur.resourceVersion, list.ResourceVersion) {
		s.latest[namespace] = sinkSnapshot{resourceVersion: list.ResourceVersion, items: list.Items}
	}
	return list.Items, nil
}

// sinkMatches applies a sink's filters; an empty filter matches everything.
func sinkMatches(sink *v1alpha1.SubscriptionSink, sub *v1alpha1.OfficialAccountSubscription) bool {
	return (len(sink.Spec.SDKAppIDs) == 0 || slices.Contains(sink.Spec.SDKAppIDs, sub.Spec.SDKAppID)) &&
		(len(sink.Spec.OfficialAccounts) == 0 || slices.Contains(sink.Spec.OfficialAccounts, sub.Spec.OfficialAccount)) &&
		(len(sink.Spec.Actions) == 0 || slices.Contains(sink.Spec.Actions, sub.Spec.Action))
}

// MatchingSinkNames are the names of the sinks that match sub.
func MatchingSinkNames(all []v1alpha1.SubscriptionSink, sub *v1alpha1.OfficialAccountSubscription) []string {
	var names []string
	for i := range all {
		if sinkMatches(&all[i], sub) {
			names = append(names, all[i].Name)
		}
	}
	return names
}

// rematch is what the retry annotation does to an event's deliveries: failed ones start a
// new round (they are returned as reset), a failed one whose sink is gone is dropped, and
// every sink that matches the event now and is not listed is added. An event that matched
// no sink, or whose sink was deleted, goes to the sinks that match it now; deliveries that
// succeeded stay as they are. Dead letters are dropped (and reset): their deliveries start
// over, and a new failure sends a new one. A replay's deliveries are the replay's to
// report, and stay as they are.
func rematch(deliveries []v1alpha1.SinkDelivery, matching []string) (out []v1alpha1.SinkDelivery, reset []string) {
	for _, d := range deliveries {
		if d.Replay != "" {
			out = append(out, d)
			continue
		}
		if d.DeadLetterOf != "" {
			reset = append(reset, d.Name)
			continue
		}
		if d.State == v1alpha1.DeliveryFailed {
			if !slices.Contains(matching, d.Name) {
				continue
			}
			d = v1alpha1.SinkDelivery{Name: d.Name, State: v1alpha1.DeliveryPending, LastError: d.LastError}
			reset = append(reset, d.Name)
		}
		out = append(out, d)
	}
	for _, name := range matching {
		if !slices.ContainsFunc(out, func(d v1alpha1.SinkDelivery) bool { return d.Name == name }) {
			out = append(out, v1alpha1.SinkDelivery{Name: name, State: v1alpha1.DeliveryPending})
		}
	}
	sortByName(out)
	return out, reset
}

// sortByName keeps an event's deliveries in the order of their sinks' names, so that its
// status reads, and compares, the same however the sinks were listed.
func sortByName(deliveries []v1alpha1.SinkDelivery) {
	slices.SortFunc(deliveries, func(a, b v1alpha1.SinkDelivery) int { return strings.Compare(a.Name, b.Name) })
}
