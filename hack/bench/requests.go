package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"k8s.io/client-go/rest"
)

// requestCounts are the API server's requests by "VERB resource[/subresource]", from its
// own apiserver_request_total: what each phase cost in requests, beside its CPU.
type requestCounts map[string]float64

// countRequests reads the API server's request counters, watches left out.
func countRequests(ctx context.Context, rc rest.Interface) (requestCounts, error) {
	metrics, err := readAPIMetrics(ctx, rc)
	if err != nil {
		return nil, err
	}
	counts := requestCounts{}
	metrics.counters("apiserver_request_total", func(labels map[string]string, n float64) {
		if labels["verb"] == "WATCH" || labels["resource"] == "" {
			return
		}
		key := labels["verb"] + " " + labels["resource"]
		if labels["subresource"] != "" {
			key += "/" + labels["subresource"]
		}
		if !strings.HasPrefix(labels["code"], "2") {
			key += " (" + labels["code"] + ")"
		}
		counts[key] += n
	})
	return counts, nil
}

// perEvent is the requests made since before, per event, largest first, as "VERB
// resource: n" for those of at least 0.01 per event.
func (c requestCounts) perEvent(before requestCounts, events int) []string {
	var out []string
	for key, n := range c {
		if per := (n - before[key]) / float64(events); per >= 0.01 {
			out = append(out, fmt.Sprintf("%s: %.2f", key, per))
		}
	}
	sort.Strings(out)
	return out
}
