package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The ServiceAccount the manager runs as with -service-account, as the chart installs it
// (and as testdata/flowschema.yaml names it).
const (
	managerServiceAccountNamespace = "officialaccount-system"
	managerServiceAccountName      = "officialaccount-operator"
	// webhookPriorityLevel is testdata/flowschema.yaml's priority level.
	webhookPriorityLevel = "officialaccount-webhook"
)

// serviceAccountKubeconfig writes a kubeconfig that authenticates the manager as the
// chart's ServiceAccount, bound to cluster-admin. The bench's own admin is in
// system:masters, whose requests priority and fairness exempts; a ServiceAccount's go to
// workload-low, as the operator's do in a cluster, or to a FlowSchema's level.
func serviceAccountKubeconfig(ctx context.Context, env *envtest.Environment, c client.Client, workDir string) (string, error) {
	ns := managerServiceAccountNamespace
	user, err := env.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + ns + ":" + managerServiceAccountName,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
	}, nil)
	if err != nil {
		return "", err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: managerServiceAccountName, Namespace: ns}},
	}
	if err := c.Create(ctx, binding); err != nil {
		return "", err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(workDir, "kubeconfig-manager")
	return path, os.WriteFile(path, kubeconfig, 0o600)
}

// applyFlowSchema creates the candidate FlowSchema and PriorityLevelConfiguration.
func applyFlowSchema(ctx context.Context, c client.Client) error {
	objects, err := testdataObjects("flowschema.yaml", strings.NewReplacer())
	if err != nil {
		return err
	}
	for _, obj := range objects {
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	return nil
}

// dispatchedAt is how many requests the API server has dispatched at a priority level,
// from its apiserver_flowcontrol_dispatched_requests_total: the proof that a FlowSchema
// matched.
func dispatchedAt(ctx context.Context, rc rest.Interface, level string) (float64, error) {
	metrics, err := readAPIMetrics(ctx, rc)
	if err != nil {
		return 0, err
	}
	var total float64
	metrics.counters("apiserver_flowcontrol_dispatched_requests_total", func(labels map[string]string, n float64) {
		if labels["priority_level"] == level {
			total += n
		}
	})
	return total, nil
}
