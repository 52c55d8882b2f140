package faults

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
)

// The real parts a fault test drives: senders posting callbacks as Tencent does, a sink
// endpoint that can be slowed or taken down, and a proxy that fails status writes.

// answer is what one callback got.
type answer struct {
	subscriber string
	sent       time.Time
	status     int    // 0 when no answer came
	action     string // ActionStatus
	info       string // ErrorInfo
	err        error  // transport error
}

func (a answer) ok() bool { return a.status == http.StatusOK && a.action == "OK" }

// senders post unique subscribe callbacks, one subscriber each, from n goroutines until
// stopped, and keep every answer.
type senders struct {
	account string
	// token, if set, is the token each request is signed with, as Tencent signs.
	token   func() string
	mu      sync.Mutex
	answers []answer
	next    atomic.Int64
	stop    chan struct{}
	done    sync.WaitGroup
}

// startSenders posts to the URL that target returns at each request, from n goroutines,
// each waiting pace between its requests (0: as fast as answers come).
func startSenders(n int, account string, pace time.Duration, target func() string) *senders {
	return startSignedSenders(n, account, pace, target, nil)
}

// startSignedSenders are senders that sign each request with the token that token
// returns at that moment.
func startSignedSenders(n int, account string, pace time.Duration, target, token func() string) *senders {
	s := &senders{account: account, token: token, stop: make(chan struct{})}
	for range n {
		s.done.Go(func() {
			// A client per sender and keep-alives, as a load balancer upstream of the
			// operator has; each request still has Tencent's 2 s.
			c := &http.Client{Timeout: 2 * time.Second}
			for {
				select {
				case <-s.stop:
					return
				default:
				}
				s.record(s.send(c, target()))
				if pace > 0 {
					select {
					case <-s.stop:
					case <-time.After(pace):
					}
				}
			}
		})
	}
	DeferCleanup(s.halt)
	return s
}

// sendOne posts a single callback.
func (s *senders) sendOne(url string) answer {
	a := s.send(&http.Client{Timeout: 2 * time.Second}, url)
	s.record(a)
	return a
}

func (s *senders) send(c *http.Client, target string) answer {
	i := s.next.Add(1)
	a := answer{subscriber: fmt.Sprintf("user%d", i), sent: time.Now()}
	body, _ := json.Marshal(map[string]any{
		"CallbackCommand":      "OfficialAccount.CallbackAfterAddSubscriber",
		"Official_Account":     s.account,
		"Operator_Account":     "107867",
		"SubscribeAccountList": []map[string]string{{"Subscriber_Account": a.subscriber}},
		"EventTime":            1_700_000_000_000 + i,
	})
	q := url.Values{"SdkAppid": {app}, "CallbackCommand": {"OfficialAccount.CallbackAfterAddSubscriber"},
		"contenttype": {"json"}, "ClientIP": {"127.0.0.1"}, "OptPlatform": {"RESTAPI"}}
	if s.token != nil {
		requestTime := strconv.FormatInt(time.Now().Unix(), 10)
		sum := sha256.Sum256([]byte(s.token() + requestTime))
		q.Set("RequestTime", requestTime)
		q.Set("Sign", hex.EncodeToString(sum[:]))
	}
	resp, err := c.Post(target+"?"+q.Encode(), "application/json", bytes.NewReader(body))
	if err != nil {
		a.err = err
		// Do not spin on a refused connection.
		time.Sleep(10 * time.Millisecond)
		return a
	}
	defer resp.Body.Close()
	var tencent struct{ ActionStatus, ErrorInfo string }
	a.status = resp.StatusCode
	if err := json.NewDecoder(resp.Body).Decode(&tencent); err != nil {
		a.err = fmt.Errorf("answer is not Tencent's JSON: %w", err)
	}
	a.action, a.info = tencent.ActionStatus, tencent.ErrorInfo
	return a
}

func (s *senders) record(a answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers = append(s.answers, a)
}

// halt stops the senders and waits for their last answers.
func (s *senders) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.done.Wait()
}

func (s *senders) all() []answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]answer(nil), s.answers...)
}

// accepted are the subscribers whose callback was answered OK.
func (s *senders) accepted() []string {
	var ids []string
	for _, a := range s.all() {
		if a.ok() {
			ids = append(ids, a.subscriber)
		}
	}
	return ids
}

func (s *senders) countOK() int { return len(s.accepted()) }

// refused reports whether err is a connection the server did not accept.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// endpoint is a sink's HTTP endpoint, a real server on a fixed address that can answer
// slowly or be taken down and brought back on the same address.
type endpoint struct {
	addr   string
	delay  atomic.Int64 // nanoseconds each delivery takes
	answer atomic.Int32 // the status code it answers with; 0 for 200

	mu       sync.Mutex
	srv      *http.Server
	received map[string]int  // ce-id -> deliveries answered
	begun    map[string]bool // ce-id of every delivery begun
	subs     map[string]bool
	arrivals []time.Time               // when each request came
	replayed map[string]map[string]int // replay (ce-replay) -> ce-id -> deliveries answered
	replayAt map[string][]time.Time    // replay (ce-replay) -> when each of its requests came
}

func newEndpoint() *endpoint {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	e := &endpoint{addr: ln.Addr().String(), received: map[string]int{}, begun: map[string]bool{}, subs: map[string]bool{},
		replayed: map[string]map[string]int{}, replayAt: map[string][]time.Time{}}
	e.serve(ln)
	DeferCleanup(e.down)
	return e
}

func (e *endpoint) url() string { return "http://" + e.addr + "/events" }

func (e *endpoint) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(e.handle), ReadHeaderTimeout: 5 * time.Second}
	e.mu.Lock()
	e.srv = srv
	e.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (e *endpoint) handle(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.begun[r.Header.Get("ce-id")] = true
	e.arrivals = append(e.arrivals, time.Now())
	if replay := r.Header.Get("ce-replay"); replay != "" {
		e.replayAt[replay] = append(e.replayAt[replay], time.Now())
	}
	e.mu.Unlock()
	time.Sleep(time.Duration(e.delay.Load()))
	body, _ := io.ReadAll(r.Body)
	var spec struct{ Subscribers []string }
	_ = json.Unmarshal(body, &spec)
	e.mu.Lock()
	e.received[r.Header.Get("ce-id")]++
	if replay := r.Header.Get("ce-replay"); replay != "" {
		if e.replayed[replay] == nil {
			e.replayed[replay] = map[string]int{}
		}
		e.replayed[replay][r.Header.Get("ce-id")]++
	}
	for _, s := range spec.Subscribers {
		e.subs[s] = true
	}
	e.mu.Unlock()
	code := int(e.answer.Load())
	if code == 0 {
		code = http.StatusOK
	}
	w.WriteHeader(code)
}

// down closes the listener and every connection: deliveries are refused.
func (e *endpoint) down() {
	e.mu.Lock()
	srv := e.srv
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// up listens again on the same address.
func (e *endpoint) up() {
	GinkgoHelper()
	ln, err := net.Listen("tcp", e.addr)
	Expect(err).NotTo(HaveOccurred())
	e.serve(ln)
}

// missing are the subscribers not yet delivered.
func (e *endpoint) missing(subscribers []string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, s := range subscribers {
		if !e.subs[s] {
			out = append(out, s)
		}
	}
	return out
}

// deliveries counts the deliveries the endpoint answered and the events received twice
// or more.
func (e *endpoint) deliveries() (total int, duplicates int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.received {
		total += n
		duplicates += n - 1
	}
	return total, duplicates
}

// mostInOneSecond is the largest number of requests that came within any one second, and
// the time from the first request to the last.
func (e *endpoint) mostInOneSecond() (most int, span time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	first := 0
	for last, at := range e.arrivals {
		for at.Sub(e.arrivals[first]) >= time.Second {
			first++
		}
		most = max(most, last-first+1)
	}
	if n := len(e.arrivals); n > 0 {
		span = e.arrivals[n-1].Sub(e.arrivals[0])
	}
	return most, span
}

// replaysOf are the deliveries a replay made to the endpoint: how many times each event
// came, by its id.
func (e *endpoint) replaysOf(replay string) map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.replayed[replay])
}

// replayRequestsAfter counts the requests of a replay that came after t.
func (e *endpoint) replayRequestsAfter(replay string, t time.Time) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, at := range e.replayAt[replay] {
		if at.After(t) {
			n++
		}
	}
	return n
}

// begunIDs are the events whose delivery the endpoint has begun to receive.
func (e *endpoint) begunIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.begun))
	for id := range e.begun {
		ids = append(ids, id)
	}
	return ids
}

// statusFailingProxy stands between the operator and kube-apiserver and answers the
// first failures writes (PUT or PATCH) of an OfficialAccountSubscription's status with 500 (the API
// server's answer when etcd times out), passing everything else through.
type statusFailingProxy struct {
	url      string
	failures atomic.Int64
	failed   atomic.Int64
}

func newStatusFailingProxy(cfg *rest.Config, failures int) *statusFailingProxy {
	GinkgoHelper()
	p := &statusFailingProxy{}
	p.failures.Store(int64(failures))
	p.url = startAPIProxy(cfg, func(w http.ResponseWriter, r *http.Request, upstream http.Handler) {
		if (r.Method == http.MethodPatch || r.Method == http.MethodPut) && strings.Contains(r.URL.Path, "/officialaccountsubscriptions/") &&
			strings.HasSuffix(r.URL.Path, "/status") && p.failures.Add(-1) >= 0 {
			p.failed.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"etcdserver: request timed out (from the test proxy)","reason":"InternalError","code":500}`)
			return
		}
		upstream.ServeHTTP(w, r)
	})
	return p
}

// startAPIProxy serves a reverse proxy to the API server that hands every request to
// intercept, with the proxy to pass it on, and returns the proxy's URL.
func startAPIProxy(cfg *rest.Config, intercept func(w http.ResponseWriter, r *http.Request, upstream http.Handler)) string {
	GinkgoHelper()
	transport, err := rest.TransportFor(cfg)
	Expect(err).NotTo(HaveOccurred())
	target, err := url.Parse(cfg.Host)
	Expect(err).NotTo(HaveOccurred())
	upstream := httputil.NewSingleHostReverseProxy(target)
	upstream.Transport = transport
	upstream.FlushInterval = -1 // watches stream
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		intercept(w, r, upstream)
	})}
	go func() { _ = srv.Serve(ln) }()
	DeferCleanup(func() { _ = srv.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String()
}

// lateWriter holds each write of a watch stream back by delay: the watcher sees every
// event, late.
type lateWriter struct {
	http.ResponseWriter
	delay time.Duration
}

func (l lateWriter) Write(b []byte) (int, error) {
	time.Sleep(l.delay)
	return l.ResponseWriter.Write(b)
}

func (l lateWriter) Flush() { l.ResponseWriter.(http.Flusher).Flush() }

// newSinkWatchDelayingProxy passes everything to the API server, but delivers the events
// of watches on SubscriptionSinks delay late: the operator's sink cache lags behind.
func newSinkWatchDelayingProxy(cfg *rest.Config, delay time.Duration) string {
	return startAPIProxy(cfg, func(w http.ResponseWriter, r *http.Request, upstream http.Handler) {
		if strings.HasSuffix(r.URL.Path, "/subscriptionsinks") && r.URL.Query().Get("watch") != "" {
			w = lateWriter{ResponseWriter: w, delay: delay}
		}
		upstream.ServeHTTP(w, r)
	})
}
