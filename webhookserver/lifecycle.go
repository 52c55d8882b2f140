package webhookserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// shutdownMargin is what a request in flight may take beyond its store's deadline to
// write its answer once the server stops accepting.
const shutdownMargin = time.Second

// storableCheckInterval paces the start-up check that the API server knows the resource.
const storableCheckInterval = time.Second

// serverState is what readiness is made of.
type serverState struct {
	addr      atomic.Value // string, once listening
	listening atomic.Bool
	storable  atomic.Bool // the API server knows OfficialAccountSubscriptions
	draining  atomic.Bool
}

// Start listens on the configured address and serves until ctx ends, then drains.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.opts.BindAddress)
	if err != nil {
		return fmt.Errorf("webhook server: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then drains: it reports not ready at once but keeps
// accepting and storing for DrainPeriod, because a Service's endpoints and an Ingress
// keep sending callbacks to a terminating pod for several seconds, and a refused callback
// is lost for good. Only then does it stop accepting, and it returns once every request
// in flight has finished its store (bounded by StoreTimeout).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle(s.opts.Path, s)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	s.log.Info("serving Tencent Cloud Chat webhooks", "address", ln.Addr().String(), "path", s.opts.Path)
	s.state.addr.Store(ln.Addr().String())
	s.state.listening.Store(true)
	defer s.state.listening.Store(false)

	checkCtx, stopCheck := context.WithCancel(ctx)
	defer stopCheck()
	go s.waitUntilStorable(checkCtx)
	if s.opts.TokenFile != "" {
		go s.watchTokenFile(checkCtx)
	}
	go s.backlog.follow(checkCtx, s.client, s.opts.Namespace, func(err error) {
		s.log.Error(err, "reading the leader's count of pending events")
	})

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("webhook server: %w", err)
	case <-ctx.Done():
	}
	return s.drain(srv)
}

// drain is the end of Serve.
func (s *Server) drain(srv *http.Server) error {
	start := time.Now()
	// From now on every answer closes its connection (see ServeHTTP), so that by the end
	// of the drain no client (an Ingress's upstream pool) holds an idle connection that
	// would close under its next request. Not SetKeepAlivesEnabled(false): that closes the
	// idle connections at once, resetting a request already on its way on one of them.
	s.state.draining.Store(true)
	s.log.Info("stopping: not ready, still accepting callbacks while endpoints are updated", "drainPeriod", s.opts.DrainPeriod)
	time.Sleep(s.opts.DrainPeriod)

	ctx, cancel := context.WithTimeout(context.Background(), s.opts.StoreTimeout+shutdownMargin)
	defer cancel()
	err := srv.Shutdown(ctx)
	s.log.Info("webhook server stopped", "took", time.Since(start).Round(time.Millisecond))
	if err != nil {
		return fmt.Errorf("webhook server: requests still in flight after the store timeout: %w", err)
	}
	return nil
}

// waitUntilStorable asks the API server, until it answers, whether it serves
// OfficialAccountSubscriptions, so that a replica is ready only once it can store.
func (s *Server) waitUntilStorable(ctx context.Context) {
	gk := v1alpha1.GroupVersion.WithKind("OfficialAccountSubscription").GroupKind()
	_ = wait.PollUntilContextCancel(ctx, storableCheckInterval, true, func(context.Context) (bool, error) {
		_, err := s.client.RESTMapper().RESTMapping(gk, v1alpha1.GroupVersion.Version)
		if err != nil {
			s.log.V(1).Info("the API server cannot store events yet", "error", err.Error())
		}
		return err == nil, nil
	})
	s.state.storable.Store(ctx.Err() == nil)
}

// Addr is the address the server listens on, once it does ("" before).
func (s *Server) Addr() string {
	a, _ := s.state.addr.Load().(string)
	return a
}

// ReadyCheck is a readiness probe: ready while the server listens, can store events, and
// is not draining.
func (s *Server) ReadyCheck(_ *http.Request) error {
	switch {
	case !s.state.listening.Load():
		return errors.New("webhook server is not listening")
	case s.state.draining.Load():
		return errors.New("webhook server is draining before it stops")
	case !s.state.storable.Load():
		return errors.New("the API server does not serve OfficialAccountSubscriptions yet (is the CRD installed?)")
	}
	return nil
}
