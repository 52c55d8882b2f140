package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// sender POSTs callbacks to the webhook as Tencent does, and records answer latencies.
type sender struct {
	url    string
	sdkApp string
	client *http.Client
}

func newSender(webhookURL, sdkApp string, concurrency int) *sender {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = concurrency
	transport.MaxIdleConns = concurrency
	return &sender{url: webhookURL, sdkApp: sdkApp, client: &http.Client{Transport: transport, Timeout: 5 * time.Second}}
}

// callbackBody is event i of a phase: the seed's shape, with one subscriber for even i and
// three for odd i; account and eventTime make each event distinct.
func callbackBody(account string, i int) []byte {
	subscribers := []map[string]string{{"Subscriber_Account": fmt.Sprintf("user-%d", i)}}
	if i%2 == 1 {
		subscribers = append(subscribers, map[string]string{"Subscriber_Account": "jared"}, map[string]string{"Subscriber_Account": "leckie"})
	}
	b, _ := json.Marshal(map[string]any{
		"CallbackCommand":      "OfficialAccount.CallbackAfterAddSubscriber",
		"Official_Account":     account,
		"Operator_Account":     "107867",
		"SubscribeAccountList": subscribers,
		"EventTime":            1670574414123 + int64(i),
	})
	return b
}

// post sends one callback and reports whether Tencent would have heard OK, and how long
// the answer took.
func (s *sender) post(ctx context.Context, body []byte) (bool, time.Duration) {
	q := url.Values{"SdkAppid": {s.sdkApp}, "CallbackCommand": {"OfficialAccount.CallbackAfterAddSubscriber"},
		"contenttype": {"json"}, "ClientIP": {"127.0.0.1"}, "OptPlatform": {"RESTAPI"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		return false, 0
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return false, time.Since(start)
	}
	defer resp.Body.Close()
	var answer struct{ ActionStatus string }
	decodeErr := json.NewDecoder(resp.Body).Decode(&answer)
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK && decodeErr == nil && answer.ActionStatus == "OK", time.Since(start)
}

// loadResult is what a load phase measured.
type loadResult struct {
	Sent      int            `json:"sent"`
	OK        int            `json:"ok"`
	Seconds   float64        `json:"seconds"`
	PerSecond float64        `json:"perSecond"`
	Latency   latencySummary `json:"latency"`
	OverOneS  int            `json:"answersOver1s"`
}

type latencySummary struct {
	P50ms float64 `json:"p50ms"`
	P95ms float64 `json:"p95ms"`
	P99ms float64 `json:"p99ms"`
	MaxMs float64 `json:"maxMs"`
}

func summarize(latencies []time.Duration) latencySummary {
	if len(latencies) == 0 {
		return latencySummary{}
	}
	slices.Sort(latencies)
	at := func(q float64) float64 {
		i := int(q * float64(len(latencies)-1))
		return float64(latencies[i].Microseconds()) / 1000
	}
	return latencySummary{P50ms: at(0.50), P95ms: at(0.95), P99ms: at(0.99), MaxMs: at(1)}
}

// closedLoop sends n callbacks with c concurrent senders, each sending its next as soon as
// it has an answer: the most the webhook takes.
func (s *sender) closedLoop(ctx context.Context, account string, n, c int) loadResult {
	latencies := make([]time.Duration, n)
	var ok atomic.Int64
	start := time.Now()
	forEachConcurrently(ctx, n, c, func(i int) bool {
		accepted, took := s.post(ctx, callbackBody(account, i))
		latencies[i] = took
		if accepted {
			ok.Add(1)
		}
		return true
	})
	return finish(n, int(ok.Load()), time.Since(start), latencies)
}

// forEachConcurrently calls do(0..n-1) from c workers, each taking the next index as soon
// as it is done; a worker stops early when do returns false or ctx ends.
func forEachConcurrently(ctx context.Context, n, c int, do func(i int) bool) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil || !do(i) {
					return
				}
			}
		})
	}
	wg.Wait()
}

// openLoop sends at a fixed rate for a duration whatever the answers do, as Tencent does:
// a slow answer does not slow the arrivals.
func (s *sender) openLoop(ctx context.Context, account string, rate float64, duration time.Duration) loadResult {
	return openLoop(rate, duration, func(i int) (bool, time.Duration) { return s.post(ctx, callbackBody(account, i)) })
}

// openLoop calls send(i) at a fixed rate for a duration, each call in its own goroutine,
// and summarizes what the calls reported.
func openLoop(rate float64, duration time.Duration, send func(i int) (ok bool, took time.Duration)) loadResult {
	n := int(rate * duration.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	latencies := make([]time.Duration, n)
	var ok atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Go(func() {
			accepted, took := send(i)
			latencies[i] = took
			if accepted {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return finish(n, int(ok.Load()), time.Since(start), latencies)
}

func finish(n, ok int, elapsed time.Duration, latencies []time.Duration) loadResult {
	over := 0
	for _, l := range latencies {
		if l > time.Second {
			over++
		}
	}
	return loadResult{Sent: n, OK: ok, Seconds: elapsed.Seconds(), PerSecond: float64(ok) / elapsed.Seconds(),
		Latency: summarize(latencies), OverOneS: over}
}
