// Package charts tests the Helm chart: lint, rendered templates, the values schema, and an
// install into a real kube-apiserver.
package charts

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

var chartDir = filepath.Join(testenv.RepoRoot(), "charts", "officialaccount-operator")

// helmBinary is the helm `make test` installs into bin/.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	h := filepath.Join(testenv.RepoRoot(), "bin", "helm")
	if _, err := os.Stat(h); err != nil {
		t.Fatalf("no helm at %s: run the tests with `make test`, which installs it", h)
	}
	return h
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// render runs `helm template` and returns the objects by "Kind/name".
func render(t *testing.T, args ...string) map[string]*unstructured.Unstructured {
	t.Helper()
	out, err := helm(t, append([]string{"template", "oao", chartDir, "--namespace", "operators"}, args...)...)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs := map[string]*unstructured.Unstructured{}
	for _, doc := range strings.Split(out, "\n---") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		objs[u.GetKind()+"/"+u.GetName()] = u
	}
	return objs
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	if u == nil {
		t.Fatal("object not rendered")
	}
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestLint(t *testing.T) {
	if out, err := helm(t, "lint", chartDir, "--strict", "-f", filepath.Join(chartDir, "ci", "default-values.yaml")); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

func TestDefaults(t *testing.T) {
	objs := render(t, "--set", "sdkAppIDs={1400000000}", "--set", "auth.existingSecret=chat-webhook-tokens")
	for _, want := range []string{
		"CustomResourceDefinition/officialaccountsubscriptions.officialaccount.chat-operators.dev",
		"CustomResourceDefinition/subscriptionsinks.officialaccount.chat-operators.dev",
		"Deployment/oao-officialaccount-operator", "ServiceAccount/oao-officialaccount-operator",
		"Role/oao-officialaccount-operator", "RoleBinding/oao-officialaccount-operator",
		"Service/oao-officialaccount-operator", "PodDisruptionBudget/oao-officialaccount-operator",
	} {
		if objs[want] == nil {
			t.Errorf("%s not rendered", want)
		}
	}
	for key := range objs {
		for _, unwanted := range []string{"Ingress/", "NetworkPolicy/", "ServiceMonitor/", "Secret/", "ClusterRole"} {
			if strings.HasPrefix(key, unwanted) {
				t.Errorf("%s rendered by default", key)
			}
		}
	}
	crd := objs["CustomResourceDefinition/subscriptionsinks.officialaccount.chat-operators.dev"]
	if crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
		t.Error("CRDs are not kept on uninstall by default")
	}

	dep := convert[appsv1.Deployment](t, objs["Deployment/oao-officialaccount-operator"])
	if *dep.Spec.Replicas != 2 {
		t.Errorf("replicas = %d", *dep.Spec.Replicas)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || !*sc.ReadOnlyRootFilesystem || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation ||
		!reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context is not locked down: %+v", sc)
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("probes do not use the manager's health endpoints")
	}
	for _, arg := range []string{"--sdk-app-id=1400000000", "--leader-elect=true", "--event-namespace=operators", "--allow-unsigned-callbacks=false",
		"--webhook-bind-address=:8090", "--delivered-retention=1h", "--max-body-bytes=1048576"} {
		if !contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	if c.Resources.Requests.Memory().IsZero() {
		t.Error("no memory request")
	}
}

// The chart's Role must grant what controller-gen derived from the code's RBAC markers,
// plus the Lease for leader election: no more, no less.
func TestRoleMatchesTheGeneratedRBAC(t *testing.T) {
	objs := render(t, "--set", "sdkAppIDs={1400000000}", "--set", "auth.allowUnsigned=true")
	role := convert[rbacv1.Role](t, objs["Role/oao-officialaccount-operator"])
	generated, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var clusterRole rbacv1.ClusterRole
	if err := yaml.Unmarshal(generated, &clusterRole); err != nil {
		t.Fatal(err)
	}
	want := append(clusterRole.Rules, rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
		Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}})
	if !reflect.DeepEqual(role.Rules, want) {
		t.Fatalf("chart Role rules\n%v\ndiffer from config/rbac/role.yaml + leases\n%v", role.Rules, want)
	}
}

func TestSDKAppIDsFromAYAMLFileStayIntegers(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("sdkAppIDs: [1400000000, \"1400000001\"]\nauth: {allowUnsigned: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dep := convert[appsv1.Deployment](t, render(t, "-f", values)["Deployment/oao-officialaccount-operator"])
	if args := dep.Spec.Template.Spec.Containers[0].Args; !contains(args, "--sdk-app-id=1400000000,1400000001") {
		t.Fatalf("args %v", args)
	}
}

func TestNonDefaultValues(t *testing.T) {
	objs := render(t,
		"--set", "sdkAppIDs={1400000000,1400000001}",
		"--set", "auth.tokens.1400000000=t0ken", "--set", "auth.tokens.1400000001={old-s3cret,s3cret}",
		"--set", "ingress.enabled=true", "--set", "ingress.host=hooks.example.org", "--set", "ingress.className=nginx",
		"--set", "networkPolicy.enabled=true",
		"--set", "metrics.serviceMonitor.enabled=true",
		"--set", "crds.enabled=false",
		"--set", "replicaCount=3",
		"--set", "eventNamespace=events",
		"--set", "webhook.path=/tencent",
		"--set", "webhook.allowedSourceCIDRs={203.0.113.0/24,198.51.100.7}", "--set", "webhook.trustedProxyCIDRs={10.0.0.0/8}",
	)
	for key := range objs {
		if strings.HasPrefix(key, "CustomResourceDefinition/") {
			t.Errorf("%s rendered with crds.enabled=false", key)
		}
	}
	ing := objs["Ingress/oao-officialaccount-operator"]
	if ing == nil {
		t.Fatal("no Ingress")
	}
	tls, _, _ := unstructured.NestedSlice(ing.Object, "spec", "tls")
	rules, _, _ := unstructured.NestedSlice(ing.Object, "spec", "rules")
	if len(tls) != 1 || len(rules) != 1 || !strings.Contains(toYAML(t, rules), "path: /tencent") || !strings.Contains(toYAML(t, rules), "hooks.example.org") {
		t.Errorf("Ingress does not route https://hooks.example.org/tencent: tls %v rules %v", tls, rules)
	}
	secret := convert[corev1.Secret](t, objs["Secret/oao-officialaccount-operator-auth"])
	if got := secret.StringData["tokens"]; !strings.Contains(got, "1400000000=t0ken\n") || !strings.Contains(got, "1400000001=old-s3cret\n1400000001=s3cret") {
		t.Errorf("token Secret holds %q", secret.StringData["tokens"])
	}
	dep := convert[appsv1.Deployment](t, objs["Deployment/oao-officialaccount-operator"])
	c := dep.Spec.Template.Spec.Containers[0]
	for _, arg := range []string{"--sdk-app-id=1400000000,1400000001", "--auth-token-file=/etc/officialaccount-operator/auth/tokens",
		"--event-namespace=events", "--webhook-path=/tencent",
		"--allowed-source-cidrs=203.0.113.0/24,198.51.100.7", "--trusted-proxy-cidrs=10.0.0.0/8"} {
		if !contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	if *dep.Spec.Replicas != 3 || len(dep.Spec.Template.Spec.Volumes) != 1 {
		t.Error("replicas or the token volume are missing")
	}
	if _, ok := dep.Spec.Template.Annotations["checksum/auth"]; ok {
		t.Error("a new token restarts the pods, though the operator reads it again by itself")
	}
	if objs["NetworkPolicy/oao-officialaccount-operator"] == nil || objs["ServiceMonitor/oao-officialaccount-operator"] == nil {
		t.Error("NetworkPolicy or ServiceMonitor missing")
	}
	if ns := objs["Role/oao-officialaccount-operator"].GetNamespace(); ns != "events" {
		t.Errorf("Role in namespace %q, want the event namespace", ns)
	}
}

func TestSchemaAndChecksRejectBadValues(t *testing.T) {
	tests := map[string][]string{
		"a typo in a value":              {"--set", "sdkAppIDs={1400000000}", "--set", "replicaCuont=2"},
		"a duration that is not one":     {"--set", "sdkAppIDs={1400000000}", "--set", "webhook.storeTimeout=soon"},
		"an SDKAppID that is not digits": {"--set", "sdkAppIDs={abc}"},
		"no SDKAppID":                    {},
		"both token sources":             {"--set", "sdkAppIDs={1}", "--set", "auth.tokens.1=x", "--set", "auth.existingSecret=s"},
		"no token, unsigned not allowed": {"--set", "sdkAppIDs={1}"},
		"an app without a token":         {"--set", "sdkAppIDs={1,2}", "--set", "auth.tokens.1=x"},
	}
	for name, args := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := helm(t, append([]string{"template", "oao", chartDir}, args...)...)
			if err == nil {
				t.Fatalf("helm template accepted it:\n%.300s", out)
			}
		})
	}
}

func TestInstallIntoARealAPIServer(t *testing.T) {
	env := testenv.NewEnvironment()
	env.CRDDirectoryPaths = nil // the chart installs them
	env.ErrorIfCRDPathMissing = false
	cfg, kubeconfig := testenv.StartForTest(t, env)
	out, err := helm(t, "install", "oao", chartDir, "--kubeconfig", kubeconfig, "--namespace", "operators",
		"--create-namespace", "--set", "sdkAppIDs={1400000000}", "--set", "auth.tokens.1400000000=s3cret")
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	for _, want := range []string{"https://<your public host>/callback", "Accepted SDKAppIDs: 1400000000", "kubectl get oasub -n operators -w"} {
		if !strings.Contains(out, want) {
			t.Errorf("the install notes lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret") {
		t.Error("the install notes reveal a token")
	}

	scheme := runtime.NewScheme()
	_ = apiextensionsv1.AddToScheme(scheme)
	_ = appsv1.AddToScheme(scheme)
	_ = corev1.AddToScheme(scheme)
	_ = rbacv1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"officialaccountsubscriptions.officialaccount.chat-operators.dev", "subscriptionsinks.officialaccount.chat-operators.dev"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, client.ObjectKey{Name: name}, &crd); err == nil && established(&crd) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s never became Established", name)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	key := client.ObjectKey{Namespace: "operators", Name: "oao-officialaccount-operator"}
	for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}, &rbacv1.Role{},
		&rbacv1.RoleBinding{}, &corev1.Secret{}} {
		k := key
		if _, ok := obj.(*corev1.Secret); ok {
			k.Name += "-auth"
		}
		if err := c.Get(ctx, k, obj); err != nil {
			t.Errorf("%T %s: %v", obj, k, err)
		}
	}

	if out, err := helm(t, "uninstall", "oao", "--kubeconfig", kubeconfig, "--namespace", "operators"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := c.Get(ctx, client.ObjectKey{Name: "officialaccountsubscriptions.officialaccount.chat-operators.dev"}, &crd); err != nil {
		t.Errorf("the CRDs (and every stored event) went with the release despite crds.keep: %v", err)
	}
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func toYAML(t *testing.T, v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func unstructuredSlice(obj map[string]any, fields ...string) ([]any, bool, error) {
	return unstructured.NestedSlice(obj, fields...)
}

// Every value in values.yaml has a row in the chart's README.
func TestTheREADMEDocumentsEveryValue(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := prefix + k
			if nested, ok := v.(map[string]any); ok && len(nested) > 0 && key != "resources" {
				walk(key+".", nested)
				continue
			}
			if !strings.Contains(string(readme), "| `"+key+"` |") {
				t.Errorf("value %s has no row in the chart's README", key)
			}
		}
	}
	walk("", values)
}

// The pod's grace period must outlast the shutdown the flags ask for, as if its steps ran
// one after another: the drain, the last stores, the reconcilers' stop and the writing of
// their outcomes. Otherwise the kubelet kills a draining pod and callbacks are refused.
func TestTheGracePeriodCoversTheShutdown(t *testing.T) {
	for name, args := range map[string][]string{
		"defaults":       {},
		"a longer drain": {"--set", "shutdown.drainPeriod=20s", "--set", "terminationGracePeriodSeconds=60"},
	} {
		t.Run(name, func(t *testing.T) {
			objs := render(t, append([]string{"--set", "sdkAppIDs={1400000000}", "--set", "auth.allowUnsigned=true"}, args...)...)
			dep := convert[appsv1.Deployment](t, objs["Deployment/oao-officialaccount-operator"])
			shutdown := 10 * time.Second // writing the outcomes the reconcilers could not (internal/operator)
			for _, flag := range []string{"--shutdown-drain-period", "--store-timeout", "--reconciler-shutdown-timeout"} {
				shutdown += durationArg(t, dep.Spec.Template.Spec.Containers[0].Args, flag)
			}
			grace := time.Duration(*dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			if grace < shutdown {
				t.Fatalf("terminationGracePeriodSeconds is %s, shorter than the shutdown's %s", grace, shutdown)
			}
		})
	}
}

func TestControllersOffMakesAnIngestOnlyRelease(t *testing.T) {
	dep := convert[appsv1.Deployment](t, render(t, "--set", "sdkAppIDs={1400000000}", "--set", "auth.allowUnsigned=true", "--set", "controllers.enabled=false")["Deployment/oao-officialaccount-operator"])
	if args := dep.Spec.Template.Spec.Containers[0].Args; !contains(args, "--controllers=false") {
		t.Fatalf("args %v lack --controllers=false", args)
	}
}

// durationArg reads a --flag=duration argument.
func durationArg(t *testing.T, args []string, flag string) time.Duration {
	t.Helper()
	for _, arg := range args {
		if value, ok := strings.CutPrefix(arg, flag+"="); ok {
			d, err := time.ParseDuration(value)
			if err != nil {
				t.Fatalf("%s: %v", arg, err)
			}
			return d
		}
	}
	t.Fatalf("args %v lack %s", args, flag)
	return 0
}

// Without a token the chart says how to set one.
func TestNoTokenFailsWithHowToSetOne(t *testing.T) {
	out, err := helm(t, "template", "oao", chartDir, "--set", "sdkAppIDs={1400000000}")
	if err == nil {
		t.Fatal("rendered without a token")
	}
	for _, want := range []string{"auth.existingSecret", "auth.tokens", "auth.allowUnsigned=true"} {
		if !strings.Contains(out, want) {
			t.Errorf("the message does not mention %s:\n%s", want, out)
		}
	}
}

func TestEgressNetworkPolicy(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`sdkAppIDs: ["1400000000"]
auth: {existingSecret: tokens}
networkPolicy:
  enabled: true
  egress:
    enabled: true
    apiServerCIDRs: ["172.20.0.1/32"]
    to:
      - to: [{ipBlock: {cidr: 10.40.0.0/16}}]
        ports: [{port: 443, protocol: TCP}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := convert[networkingv1.NetworkPolicy](t, render(t, "-f", values)["NetworkPolicy/oao-officialaccount-operator"])
	if !slices.Contains(policy.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Fatalf("policy types %v lack Egress", policy.Spec.PolicyTypes)
	}
	var peers []string
	for _, rule := range policy.Spec.Egress {
		for _, to := range rule.To {
			switch {
			case to.IPBlock != nil:
				peers = append(peers, to.IPBlock.CIDR)
			case to.PodSelector != nil:
				peers = append(peers, "dns")
			}
		}
	}
	if !slices.Equal(peers, []string{"dns", "172.20.0.1/32", "10.40.0.0/16"}) {
		t.Fatalf("egress to %v, want DNS, the API server and the listed sink", peers)
	}
	if out, err := helm(t, "template", "oao", chartDir, "--set", "sdkAppIDs={1}", "--set", "auth.allowUnsigned=true",
		"--set", "networkPolicy.enabled=true", "--set", "networkPolicy.egress.enabled=true"); err == nil || !strings.Contains(out, "apiServerCIDRs is required") {
		t.Fatalf("egress without the API server's address rendered: %v\n%.300s", err, out)
	}
}
