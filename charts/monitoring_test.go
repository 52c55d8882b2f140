package charts

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/chat-operators/officialaccount-operator/controllers"
	"github.com/chat-operators/officialaccount-operator/delivery"
	"github.com/chat-operators/officialaccount-operator/resync"
	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// exportedMetrics are the names the operator exports, from its own collectors.
func exportedMetrics(t *testing.T) []string {
	t.Helper()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	var names []string
	for _, c := range slices.Concat(controllers.Metrics, delivery.Metrics, webhookserver.Metrics, resync.Metrics) {
		descs := make(chan *prometheus.Desc, 8)
		c.Describe(descs)
		close(descs)
		for d := range descs {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			names = append(names, m[1])
		}
	}
	return names
}

// checkQuery parses a PromQL expression with Prometheus' own parser and checks that every
// metric it reads is one the operator exports (a histogram's _bucket, _sum and _count too).
func checkQuery(t *testing.T, where, expr string, exported []string) {
	t.Helper()
	parsed, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Errorf("%s: %v\n%s", where, err, expr)
		return
	}
	selectors := 0
	parser.Inspect(parsed, func(node parser.Node, _ []parser.Node) error {
		vs, ok := node.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selectors++
		name := vs.Name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, cut := strings.CutSuffix(name, suffix); cut && slices.Contains(exported, base) {
				name = base
			}
		}
		if !slices.Contains(exported, name) {
			t.Errorf("%s reads %q, which the operator does not export", where, vs.Name)
		}
		return nil
	})
	if selectors == 0 {
		t.Errorf("%s reads no metric: %s", where, expr)
	}
}

func TestAlertsParseAndReadExportedMetrics(t *testing.T) {
	objs := render(t, "-f", chartDir+"/ci/default-values.yaml", "--set", "metrics.prometheusRule.enabled=true")
	rule := objs["PrometheusRule/oao-officialaccount-operator"]
	if rule == nil {
		t.Fatal("no PrometheusRule rendered")
	}
	groups, _, _ := unstructuredSlice(rule.Object, "spec", "groups")
	exported := exportedMetrics(t)
	var alerts []string
	for _, g := range groups {
		rules, _, _ := unstructuredSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			r := r.(map[string]any)
			name, _ := r["alert"].(string)
			alerts = append(alerts, name)
			checkQuery(t, "alert "+name, r["expr"].(string), exported)
			labels, _ := r["labels"].(map[string]any)
			if labels["severity"] == nil {
				t.Errorf("alert %s has no severity", name)
			}
		}
	}
	for _, want := range []string{"OfficialAccountWebhookUnavailable", "OfficialAccountWebhookRefusing", "OfficialAccountNoCallbacks",
		"OfficialAccountSinkDeliveriesFailed", "OfficialAccountSinkBacklogOld", "OfficialAccountSinkBacklogGrowing", "OfficialAccountResyncOverdue"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alert %s missing; rendered %v", want, alerts)
		}
	}

	off := render(t, "-f", chartDir+"/ci/default-values.yaml")
	if off["PrometheusRule/oao-officialaccount-operator"] != nil {
		t.Error("a PrometheusRule was rendered while metrics.prometheusRule.enabled is false")
	}
}

func TestDashboardRendersAndItsQueriesParse(t *testing.T) {
	objs := render(t, "-f", chartDir+"/ci/default-values.yaml", "--set", "metrics.grafanaDashboard.enabled=true")
	cm := objs["ConfigMap/oao-officialaccount-operator-dashboard"]
	if cm == nil {
		t.Fatal("no dashboard ConfigMap rendered")
	}
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("the dashboard ConfigMap lacks the grafana_dashboard label the sidecar looks for: %v", cm.GetLabels())
	}
	data, _ := cm.Object["data"].(map[string]any)
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(data["officialaccount-operator.json"].(string)), &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	// Grafana's variables, as Grafana would replace them before querying.
	vars := strings.NewReplacer("$__rate_interval", "1m", "$namespace", "operators")
	exported := exportedMetrics(t)
	queried := map[string]bool{}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			checkQuery(t, "panel "+p.Title, vars.Replace(target.Expr), exported)
			for _, m := range exported {
				if strings.Contains(target.Expr, m) {
					queried[m] = true
				}
			}
		}
	}
	for _, want := range []string{"officialaccount_webhook_requests_total", "officialaccount_webhook_store_duration_seconds",
		"officialaccount_deliveries_total", "officialaccount_sink_pending_events", "officialaccount_sink_oldest_pending_age_seconds",
		"officialaccount_sink_failed_events"} {
		if !queried[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}
