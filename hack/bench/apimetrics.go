package main

import (
	"bytes"
	"context"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
)

// apiMetrics are the API server's own metrics, by family name.
type apiMetrics map[string]*dto.MetricFamily

// readAPIMetrics reads the API server's /metrics.
func readAPIMetrics(ctx context.Context, rc rest.Interface) (apiMetrics, error) {
	body, err := rc.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(bytes.NewReader(body))
}

// counters calls add with each series of the counter family and its labels.
func (m apiMetrics) counters(family string, add func(labels map[string]string, value float64)) {
	for _, series := range m[family].GetMetric() {
		labels := make(map[string]string, len(series.GetLabel()))
		for _, l := range series.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		add(labels, series.GetCounter().GetValue())
	}
}
