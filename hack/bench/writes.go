package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// The write-cost phase measures the control plane's CPU for each write of an event's life
// on its own, for the CRD as shipped and for the candidate ways of enforcing the spec's
// immutability. Each candidate is a copy of the event CRD under a group of its own, so
// that the variants never share a schema, a watch cache or an admission policy.

// crdVariant is one way the event resource may be defined.
type crdVariant struct {
	Name  string
	group string // "" is the project's own CRD, as shipped
	// stripRules drops the CRD's CEL rules; policy adds the candidate admission policy
	// (testdata), bound to this variant's resource.
	stripRules, policy bool
}

var crdVariants = []crdVariant{
	{Name: "as shipped"},
	{Name: "without CEL rules", group: "nocel.bench.chat-operators.dev", stripRules: true},
	{Name: "admission policy instead", group: "policy.bench.chat-operators.dev", stripRules: true, policy: true},
}

// The writes of an event's life, in the order they happen to one object.
const (
	writeCreate      = "create"
	writeStatusMerge = "status: merge patch (the reconciler's)"
	writeStatusPut   = "status: update"
	writeStatusApply = "status: server-side apply"
	writeSmallStatus = "status: merge patch, conditions only"
	writeDelete      = "delete (retention's)"
	// Requests that do not depend on the event's CRD, priced once.
	writeEvent    = "Event (events.k8s.io)"
	readSinksAsOf = "read: the sinks as of the event (a list served by the watch cache)"
)

var writeKinds = []string{writeCreate, writeStatusMerge, writeStatusPut, writeStatusApply, writeSmallStatus, writeDelete, writeEvent, readSinksAsOf}

// sameForEveryVariant says a request's cost does not depend on how the event CRD is defined.
func sameForEveryVariant(kind string) bool { return kind == writeEvent || kind == readSinksAsOf }

// writeCosts are the control plane's (kube-apiserver + etcd) CPU milliseconds per write,
// by variant and write.
type writeCosts map[string]map[string]float64

// measureWriteCosts runs n writes of each kind against each variant with c workers.
func measureWriteCosts(ctx context.Context, c client.Client, meter *cpuMeter, n, workers int, logf func(string, ...any)) (writeCosts, error) {
	costs := writeCosts{}
	for _, v := range crdVariants {
		logf("write costs, %s: %d of each write", v.Name, n)
		gvk, err := installVariant(ctx, c, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.Name, err)
		}
		costs[v.Name] = map[string]float64{}
		objects := make([]*unstructured.Unstructured, n)
		for _, kind := range writeKinds {
			if sameForEveryVariant(kind) && v.group != "" {
				continue
			}
			before := meter.sample()
			var firstErr error
			var once sync.Once
			forEachConcurrently(ctx, n, workers, func(i int) bool {
				if objects[i] == nil {
					objects[i] = variantObject(gvk.GroupVersion().String(), i)
				}
				if err := write(ctx, c, kind, objects[i]); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("%s, %s: %w", v.Name, kind, err) })
					return false
				}
				return true
			})
			if firstErr != nil {
				return nil, firstErr
			}
			costs[v.Name][kind] = meter.costSince(before, n).controlPlaneMs()
		}
	}
	return costs, nil
}

// write makes one write of the given kind to obj, which holds the object as last written.
func write(ctx context.Context, c client.Client, kind string, obj *unstructured.Unstructured) error {
	switch kind {
	case writeCreate:
		return c.Create(ctx, obj)
	case writeStatusMerge:
		return patchStatus(ctx, c, obj, statusContent(obj, 1))
	case writeStatusPut:
		if err := unstructured.SetNestedField(obj.Object, statusContent(obj, 2), "status"); err != nil {
			return err
		}
		return c.Status().Update(ctx, obj)
	case writeStatusApply:
		applied := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": obj.GetAPIVersion(), "kind": obj.GetKind(),
			"metadata": map[string]any{"name": obj.GetName(), "namespace": obj.GetNamespace()},
			"status":   statusContent(obj, 3)}}
		//nolint:staticcheck // the Apply patch type is what a typed apply configuration sends too
		err := c.Status().Patch(ctx, applied, client.Apply, client.FieldOwner("bench"), client.ForceOwnership)
		obj.Object = applied.Object // the answer, for the next write's optimistic lock
		return err
	case writeSmallStatus:
		// A status that replaces the per-sink list by the Ready condition alone: what a
		// leaner status would write instead.
		return patchStatus(ctx, c, obj, map[string]any{"sinks": nil, "completionTime": nil,
			"conditions": statusContent(obj, 4)["conditions"]})
	case writeDelete:
		uid := obj.GetUID()
		return c.Delete(ctx, obj, client.Preconditions{UID: &uid})
	case writeEvent:
		return c.Create(ctx, deliveryEvent(obj))
	case readSinksAsOf:
		// As the reconciler matches a new event: at least as new as the event itself.
		var sinks v1alpha1.SubscriptionSinkList
		return c.List(ctx, &sinks, client.InNamespace(obj.GetNamespace()), &client.ListOptions{Raw: &metav1.ListOptions{
			ResourceVersion: obj.GetResourceVersion(), ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}})
	}
	return fmt.Errorf("unknown write %q", kind)
}

// patchStatus sends a merge patch of the status with an optimistic lock, as the
// reconciler does, and keeps the answer in obj.
func patchStatus(ctx context.Context, c client.Client, obj *unstructured.Unstructured, status map[string]any) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": obj.GetResourceVersion()}, "status": status})
	if err != nil {
		return err
	}
	return c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body))
}

// statusContent is deliveredStatus as the content of an unstructured object.
func statusContent(obj *unstructured.Unstructured, attempt int32) map[string]any {
	status := deliveredStatus(obj.GetGeneration(), attempt)
	content, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(&status)
	return content
}

// deliveryEvent is the Normal Event the reconciler can record for a delivery.
func deliveryEvent(obj *unstructured.Unstructured) *eventsv1.Event {
	return &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", obj.GetName(), time.Now().UnixNano()), Namespace: obj.GetNamespace()},
		EventTime:  metav1.NowMicro(), ReportingController: "officialaccount-operator", ReportingInstance: "bench",
		Action: "Deliver", Reason: v1alpha1.ReasonDelivered, Type: "Normal", Note: "delivered to sink bench on attempt 1",
		Regarding: corev1.ObjectReference{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(),
			Name: obj.GetName(), UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion()},
	}
}

// variantObject is the bench's sample event as an object of the variant's group.
func variantObject(apiVersion string, i int) *unstructured.Unstructured {
	typed := sampleObject("ceiling", fmt.Sprintf("write-%d", i), i)
	content, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(typed)
	u := &unstructured.Unstructured{Object: content}
	u.SetAPIVersion(apiVersion)
	u.SetKind("OfficialAccountSubscription")
	return u
}

// installVariant makes the variant's CRD (and policy) exist and be served, and answers the
// kind to write.
func installVariant(ctx context.Context, c client.Client, v crdVariant) (schema.GroupVersionKind, error) {
	if v.group == "" {
		return v1alpha1.GroupVersion.WithKind("OfficialAccountSubscription"), nil
	}
	crd, err := variantCRD(v)
	if err != nil {
		return schema.GroupVersionKind{}, err
	}
	if err := createOrKeep(ctx, c, crd); err != nil {
		return schema.GroupVersionKind{}, err
	}
	gvk := schema.GroupVersionKind{Group: v.group, Version: v1alpha1.GroupVersion.Version, Kind: "OfficialAccountSubscription"}
	if v.policy {
		policy, err := specImmutabilityPolicy(v.group)
		if err != nil {
			return schema.GroupVersionKind{}, err
		}
		for _, obj := range policy {
			if err := createOrKeep(ctx, c, obj); err != nil {
				return schema.GroupVersionKind{}, err
			}
		}
	}
	// Served once an object of it can be listed.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind("OfficialAccountSubscriptionList"))
		if err := c.List(ctx, list, client.InNamespace("ceiling")); err == nil {
			break
		} else if time.Now().After(deadline) {
			return schema.GroupVersionKind{}, fmt.Errorf("the CRD of %s is not served after a minute: %w", v.group, err)
		}
	}
	if v.policy {
		return gvk, waitPolicyEnforced(ctx, c, gvk)
	}
	return gvk, nil
}

// variantCRD is the project's event CRD under the variant's group, with its CEL rules
// dropped when the variant says so.
func variantCRD(v crdVariant) (*unstructured.Unstructured, error) {
	path := filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", v1alpha1.GroupVersion.Group+"_officialaccountsubscriptions.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(raw, &crd.Object); err != nil {
		return nil, err
	}
	crd.SetName("officialaccountsubscriptions." + v.group)
	crd.SetResourceVersion("")
	if err := unstructured.SetNestedField(crd.Object, v.group, "spec", "group"); err != nil {
		return nil, err
	}
	if v.stripRules {
		dropCELRules(crd.Object)
	}
	return crd, nil
}

// dropCELRules removes every x-kubernetes-validations from a decoded schema, in place.
func dropCELRules(node any) {
	switch n := node.(type) {
	case map[string]any:
		delete(n, "x-kubernetes-validations")
		for _, child := range n {
			dropCELRules(child)
		}
	case []any:
		for _, child := range n {
			dropCELRules(child)
		}
	}
}

// specImmutabilityPolicy is the candidate admission policy and its binding (testdata),
// bound to the given group's events.
func specImmutabilityPolicy(group string) ([]*unstructured.Unstructured, error) {
	return testdataObjects("spec-immutability-policy.yaml", strings.NewReplacer(v1alpha1.GroupVersion.Group, group))
}

// testdataObjects reads the objects of a YAML file in testdata, with the replacements
// made first.
func testdataObjects(file string, replace *strings.Replacer) ([]*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "hack", "bench", "testdata", file))
	if err != nil {
		return nil, err
	}
	var objects []*unstructured.Unstructured
	for _, doc := range strings.Split(replace.Replace(string(raw)), "\n---\n") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			return nil, err
		}
		objects = append(objects, obj)
	}
	return objects, nil
}

// waitPolicyEnforced waits until the API server denies a change of an event's spec: an
// admission policy takes effect a moment after it is created.
func waitPolicyEnforced(ctx context.Context, c client.Client, gvk schema.GroupVersionKind) error {
	probe := variantObject(gvk.GroupVersion().String(), -1)
	probe.SetName("policy-probe")
	if err := c.Create(ctx, probe); err != nil {
		return err
	}
	defer func() { _ = c.Delete(ctx, probe) }()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		changed := probe.DeepCopy()
		action, _, _ := unstructured.NestedString(probe.Object, "spec", "action")
		other := map[string]string{"Subscribe": "Unsubscribe", "Unsubscribe": "Subscribe"}[action]
		_ = unstructured.SetNestedField(changed.Object, other, "spec", "action")
		err := c.Update(ctx, changed)
		if apierrors.IsInvalid(err) {
			return nil
		}
		if err == nil {
			probe = changed
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("a spec change was still allowed a minute after the policy was created (last answer: %v)", err)
		}
	}
}

func createOrKeep(ctx context.Context, c client.Client, obj client.Object) error {
	if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

func printWriteCosts(w io.Writer, costs writeCosts) {
	if len(costs) == 0 {
		return
	}
	names := make([]string, len(crdVariants))
	for i, v := range crdVariants {
		names[i] = v.Name
	}
	fmt.Fprintf(w, "\nControl-plane CPU per write (kube-apiserver + etcd, ms), by how the event CRD is defined:\n\n")
	fmt.Fprintf(w, "| write | %s |\n|---|%s\n", strings.Join(names, " | "), strings.Repeat("---|", len(names)))
	for _, kind := range writeKinds {
		cells := make([]string, len(crdVariants))
		for i, v := range crdVariants {
			if ms, ok := costs[v.Name][kind]; ok {
				cells[i] = fmt.Sprintf("%.2f", ms)
			} else {
				cells[i] = "(same)"
			}
		}
		fmt.Fprintf(w, "| %s | %s |\n", kind, strings.Join(cells, " | "))
	}
}
