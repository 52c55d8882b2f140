package main

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"k8s.io/client-go/rest"
)

// requestCounts are the API server's requests by "VERB resource[/subresource]", from its
// own apiserver_request_total: what each phase cost in requests, beside its CPU.
type requestCounts map[string]float64

var requestSeries = regexp.MustCompile(`^apiserver_request_total\{(.*)\} ([0-9.e+]+)$`)

// countRequests reads the API server's request counters, watches left out.
func countRequests(ctx context.Context, rc rest.Interface) (requestCounts, error) {
	body, err := rc.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	counts := requestCounts{}
	scanner := bufio.NewScanner(strings.NewReader(string(body)))
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		m := requestSeries.FindStringSubmatch(scanner.Text())
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(m[1], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		if labels["verb"] == "WATCH" || labels["resource"] == "" {
			continue
		}
		key := labels["verb"] + " " + labels["resource"]
		if labels["subresource"] != "" {
			key += "/" + labels["subresource"]
		}
		if !strings.HasPrefix(labels["code"], "2") {
			key += " (" + labels["code"] + ")"
		}
		n, _ := strconv.ParseFloat(m[2], 64)
		counts[key] += n
	}
	return counts, scanner.Err()
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
