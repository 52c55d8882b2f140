// Package webhookserver receives Tencent Cloud Chat's Official Account callbacks and
// stores each subscriber event as OfficialAccountSubscription resources before it answers.
package webhookserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// Options configure the webhook server; main.go maps each to a flag.
type Options struct {
	BindAddress string
	Path        string
	// SDKAppIDs are the apps whose callbacks are accepted; others get 403.
	SDKAppIDs []string
	// Tokens are the webhook authentication tokens by SDKAppID; an app with a token must
	// send Sign and RequestTime. TokenFile, when set, is read instead, and read again
	// whenever it changes.
	Tokens    Tokens
	TokenFile string
	// AllowUnsigned accepts callbacks of apps that have no token. Without it, every
	// accepted app must have one.
	AllowUnsigned bool
	// MaxPendingEvents stops storing while that many stored events are not yet complete;
	// 0 never does.
	MaxPendingEvents int
	// Sources admits callbacks only from Tencent's addresses, when it lists any.
	Sources        SourceFilter
	MaxRequestSkew time.Duration
	MaxBodyBytes   int64
	// MaxResourcesPerCallback bounds what one request may store: a callback that would
	// take more resources (of 500 subscribers each) is refused whole with 413, not stored
	// in part. Tencent adds at most 100 subscribers per call.
	MaxResourcesPerCallback int
	// Namespace the resources are created in.
	Namespace string
	// StoreTimeout bounds storing one event; it must stay well under Tencent's 2 s so that
	// Tencent hears FAIL rather than timing out.
	StoreTimeout time.Duration
	// OnStore, when set, is told how long each store took until it was answered (the
	// operator's deliveries give way to slow stores: package storepressure).
	OnStore func(took time.Duration)
	// DrainPeriod is how long the server keeps accepting callbacks after it was told to
	// stop, while it reports not ready (see Serve).
	DrainPeriod time.Duration
}

// Server serves the webhook. It runs on every replica, leader or not, and needs nothing
// but a client that can create resources: no informer cache, no leadership.
type Server struct {
	opts    Options
	client  client.Client
	log     logr.Logger
	now     func() time.Time
	state   serverState
	tokens  atomic.Pointer[Tokens]
	backlog backlogGate
}

// New checks the options and returns a server that stores events with the client.
func New(c client.Client, opts Options) (*Server, error) {
	if len(opts.SDKAppIDs) == 0 {
		return nil, errors.New("at least one SDKAppID is required (--sdk-app-id)")
	}
	if opts.Namespace == "" {
		return nil, errors.New("the namespace to store events in is empty")
	}
	if opts.StoreTimeout <= 0 || opts.MaxBodyBytes <= 0 || opts.MaxRequestSkew <= 0 || opts.MaxResourcesPerCallback <= 0 {
		return nil, errors.New("store timeout, body limit, resources per callback and request-time skew must be positive")
	}
	if opts.DrainPeriod < 0 {
		return nil, errors.New("the shutdown drain period must not be negative")
	}
	tokens := opts.Tokens
	if opts.TokenFile != "" {
		var err error
		if tokens, err = LoadTokens(opts.TokenFile); err != nil {
			return nil, err
		}
	}
	if err := checkTokens(tokens, opts.SDKAppIDs, opts.AllowUnsigned); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, client: c, log: logf.Log.WithName("webhook"), now: time.Now, backlog: backlogGate{max: opts.MaxPendingEvents}}
	s.setTokens(tokens)
	if n := unsignedApps(tokens, opts.SDKAppIDs); n > 0 {
		s.log.Info("WARNING: --allow-unsigned-callbacks: anyone who knows the webhook's URL can store events for apps without a token",
			"unsignedApps", n)
	}
	return s, nil
}

// setTokens puts tokens in use.
func (s *Server) setTokens(tokens Tokens) {
	s.tokens.Store(&tokens)
	unsignedAppsGauge.Set(float64(unsignedApps(tokens, s.opts.SDKAppIDs)))
}

// answer is what a request gets; every answer carries the JSON body Tencent expects.
type answer struct {
	status  int
	result  string
	info    string
	command string
	stored  []string
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.state.draining.Load() {
		w.Header().Set("Connection", "close")
	}
	a := s.handle(w, r)
	writeAnswer(w, a)
	requestsTotal.WithLabelValues(commandLabel(a.command), a.result).Inc()

	s.logAnswer(r, a)
}

// logAnswer logs an answer: never the query string, which holds Sign. A stored event's
// line is at V(1), usually off, and then costs nothing: the logger's values are built only
// for a line that is written.
func (s *Server) logAnswer(r *http.Request, a answer) {
	switch {
	case a.status >= 500:
		s.log.Error(errors.New(a.info), "webhook request not stored", "command", a.command, "result", a.result, "status", a.status)
	case a.status >= 400:
		s.log.Info("webhook request rejected", "command", a.command, "result", a.result, "status", a.status,
			"reason", a.info, "remote", r.RemoteAddr)
	case s.log.V(1).Enabled():
		s.log.V(1).Info("webhook request handled", "command", a.command, "result", a.result, "status", a.status, "resources", a.stored)
	}
}

// handle runs the one path of a request: check the sender (its address, its app, its
// signature) before reading the body, then read, parse, store.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) answer {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return answer{status: http.StatusMethodNotAllowed, result: "method_not_allowed", info: "the webhook accepts POST only"}
	}
	q := parseQuery(r.URL.Query())
	if err := s.opts.Sources.admit(r); err != nil {
		return rejected(q.CallbackCommand, err)
	}
	if err := s.authenticate(q); err != nil {
		return rejected(q.CallbackCommand, err)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return answer{status: http.StatusRequestEntityTooLarge, result: "too_large", command: q.CallbackCommand,
				info: fmt.Sprintf("body is larger than %d bytes", s.opts.MaxBodyBytes)}
		}
		return rejected(q.CallbackCommand, badRequest("could not read the body: %v", err))
	}
	cb, handled, err := parseCallback(q, body)
	if err != nil {
		var reqErr *requestError
		errors.As(err, &reqErr)
		return rejected(q.CallbackCommand, reqErr)
	}
	if !handled {
		return answer{status: http.StatusOK, result: "ignored", command: q.CallbackCommand}
	}
	if limit := s.opts.MaxResourcesPerCallback * v1alpha1.MaxSubscribersPerResource; len(cb.Subscribers) > limit {
		return answer{status: http.StatusRequestEntityTooLarge, result: "too_large", command: cb.Command,
			info: fmt.Sprintf("the callback lists %d subscribers; at most %d are stored from one callback (--max-resources-per-callback %d)",
				len(cb.Subscribers), limit, s.opts.MaxResourcesPerCallback)}
	}
	if err := s.backlog.admit(); err != nil {
		return rejected(cb.Command, err)
	}
	return s.store(r.Context(), cb)
}

func rejected(command string, err *requestError) answer {
	return answer{status: err.status, result: err.result, info: err.info, command: command}
}

// authenticate checks that the callback is for one of our apps and, where the app has a
// token, that it is signed.
func (s *Server) authenticate(q queryParams) *requestError {
	if q.SDKAppID == "" {
		return &requestError{status: http.StatusForbidden, result: "forbidden", info: "SdkAppid is missing from the query"}
	}
	if !slices.Contains(s.opts.SDKAppIDs, q.SDKAppID) {
		return &requestError{status: http.StatusForbidden, result: "forbidden",
			info: fmt.Sprintf("SdkAppid %q is not an app this operator accepts", q.SDKAppID)}
	}
	if tokens := (*s.tokens.Load())[q.SDKAppID]; len(tokens) > 0 {
		return verifySign(tokens, q.Sign, q.RequestTime, s.now(), s.opts.MaxRequestSkew)
	}
	return nil
}

// store creates the event's resources and answers OK only once all of them exist, or
// 503 FAIL when that takes longer than StoreTimeout. The deadline holds even where the
// client does not honour its context (a RESTMapper discovering the API on first use).
// Creation does not stop when Tencent hangs up: an event stored late is still kept, and a
// retried delivery of it finds it there.
func (s *Server) store(ctx context.Context, cb Callback) answer {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.StoreTimeout)
	defer cancel()
	start := time.Now()
	done := make(chan answer, 1)
	go func() { done <- s.createAll(ctx, cb) }()
	var a answer
	select {
	case a = <-done:
	case <-ctx.Done():
		a = answer{status: http.StatusServiceUnavailable, result: "unavailable", command: cb.Command,
			info: fmt.Sprintf("the event could not be stored within %s and was not accepted", s.opts.StoreTimeout)}
	}
	took := time.Since(start)
	storeDuration.WithLabelValues(a.result).Observe(took.Seconds())
	if s.opts.OnStore != nil {
		s.opts.OnStore(took)
	}
	return a
}

// createAll creates each of the event's resources; one that exists already was stored by
// an earlier delivery of the same event.
func (s *Server) createAll(ctx context.Context, cb Callback) answer {
	now := s.now()
	objs := subscriptionsFor(cb, s.opts.Namespace, metav1.NewTime(now))
	names := make([]string, 0, len(objs))
	result := "stored"
	for _, obj := range objs {
		err := s.client.Create(ctx, obj)
		switch {
		case apierrors.IsAlreadyExists(err):
			result = "duplicate"
		case apierrors.IsInvalid(err):
			return rejected(cb.Command, badRequest("the event is not a valid OfficialAccountSubscription: %v", err))
		case err != nil:
			return answer{status: http.StatusServiceUnavailable, result: "unavailable", command: cb.Command, stored: names,
				info: fmt.Sprintf("the event could not be stored and was not accepted: %v", err)}
		}
		if err == nil {
			s.backlog.stored(now)
		}
		names = append(names, obj.Name)
	}
	return answer{status: http.StatusOK, result: result, command: cb.Command, stored: names}
}

// tencentAnswer is the response body Tencent Cloud Chat expects.
type tencentAnswer struct {
	ActionStatus string `json:"ActionStatus"`
	ErrorCode    int    `json:"ErrorCode"`
	ErrorInfo    string `json:"ErrorInfo"`
}

func writeAnswer(w http.ResponseWriter, a answer) {
	body := tencentAnswer{ActionStatus: "OK"}
	if a.status != http.StatusOK {
		body = tencentAnswer{ActionStatus: "FAIL", ErrorCode: a.status, ErrorInfo: a.info}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_ = json.NewEncoder(w).Encode(body)
}
