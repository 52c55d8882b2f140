package operator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/chat-operators/officialaccount-operator/webhookserver"
)

// The process's own HTTP servers: probes, metrics and pprof belong to the process, not to
// a manager, because a replica that does not lead runs no manager but must still be
// probed and scraped.

// startProcessServers starts the servers the flags ask for; done closes once all have
// stopped after ctx ends.
func startProcessServers(ctx context.Context, restConfig *rest.Config, f *Flags, webhook *webhookserver.Server) (<-chan struct{}, error) {
	var servers []func(context.Context) error
	for _, s := range []struct {
		name, addr string
		handler    func() http.Handler
	}{
		{"probes", f.ProbeAddr, func() http.Handler { return probesHandler(webhook) }},
		{"pprof", f.PprofAddr, pprofHandler},
	} {
		if s.addr == "" || s.addr == "0" {
			continue
		}
		serve, err := httpServer(s.name, s.addr, s.handler())
		if err != nil {
			return nil, err
		}
		servers = append(servers, serve)
	}
	metrics, err := metricsserver.NewServer(metricsserver.Options{BindAddress: f.MetricsAddr}, restConfig, nil)
	if err != nil {
		return nil, fmt.Errorf("creating the metrics server: %w", err)
	}
	if metrics != nil {
		servers = append(servers, metrics.Start)
	}

	var wg sync.WaitGroup
	for _, serve := range servers {
		wg.Go(func() {
			if err := serve(ctx); err != nil {
				ctrl.Log.WithName("operator").Error(err, "a probe, metrics or pprof server stopped")
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done, nil
}

// probesHandler serves /healthz (the process is alive) and /readyz (the webhook can take
// callbacks), with controller-runtime's handler.
func probesHandler(webhook *webhookserver.Server) http.Handler {
	mux := http.NewServeMux()
	live := &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}
	ready := &healthz.Handler{Checks: map[string]healthz.Checker{"webhook": webhook.ReadyCheck}}
	mux.Handle("/healthz", http.StripPrefix("/healthz", live))
	mux.Handle("/healthz/", http.StripPrefix("/healthz", live))
	mux.Handle("/readyz", http.StripPrefix("/readyz", ready))
	mux.Handle("/readyz/", http.StripPrefix("/readyz", ready))
	return mux
}

func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// httpServer serves handler on addr until ctx ends. The listener is opened at once, so
// that a port already taken fails the start, not a goroutine later.
func httpServer(name, addr string, handler http.Handler) (func(context.Context) error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s server: %w", name, err)
	}
	return func(ctx context.Context) error {
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			<-ctx.Done()
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s server: %w", name, err)
		}
		return nil
	}, nil
}
