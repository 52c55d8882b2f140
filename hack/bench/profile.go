package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// profiler takes CPU profiles of kube-apiserver (through its own /debug/pprof, as the
// bench's admin client) and of the manager (its --pprof-bind-address) over one phase, so
// that a missed target can be shown with what bounds it.
type profiler struct {
	dir        string
	apiServer  rest.Interface
	managerURL string // http://host:port of the manager's pprof server
}

// profiledArgs are a manager's flags with its pprof server on when profiles are asked
// for, and the profiler of that manager and the API server.
func profiledArgs(cfg config, apiServer rest.Interface, args []string) ([]string, *profiler, error) {
	prof := &profiler{dir: cfg.ProfileDir, apiServer: apiServer}
	if cfg.ProfileDir == "" {
		return args, prof, nil
	}
	if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
		return nil, nil, err
	}
	port, err := testenv.FreeLoopbackPort()
	if err != nil {
		return nil, nil, err
	}
	prof.managerURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	return append(args, fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", port)), prof, nil
}

// profile captures both processes' CPU for the given seconds, in the background; wait
// blocks until both profiles are written as <phase>-kube-apiserver.pprof and
// <phase>-manager.pprof.
func (p *profiler) profile(ctx context.Context, phase string, seconds int, logf func(string, ...any)) (wait func()) {
	if p == nil || p.dir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	capture := func(who string, fetch func(context.Context) (io.ReadCloser, error)) {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+30)*time.Second)
			defer cancel()
			path := filepath.Join(p.dir, fmt.Sprintf("%s-%s.pprof", phase, who))
			err := writeProfile(ctx, path, fetch)
			if err != nil {
				logf("profile of %s over %s: %v", who, phase, err)
				return
			}
			logf("profile of %s over %s written to %s", who, phase, path)
		})
	}
	secs := strconv.Itoa(seconds)
	capture(roleAPIServer, func(ctx context.Context) (io.ReadCloser, error) {
		return p.apiServer.Get().AbsPath("/debug/pprof/profile").Param("seconds", secs).Stream(ctx)
	})
	if p.managerURL != "" {
		capture(roleManager, func(ctx context.Context) (io.ReadCloser, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.managerURL+"/debug/pprof/profile?seconds="+secs, nil)
			if err != nil {
				return nil, err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return nil, err
			}
			if resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				return nil, fmt.Errorf("manager pprof answered %s", resp.Status)
			}
			return resp.Body, nil
		})
	}
	return wg.Wait
}

func writeProfile(ctx context.Context, path string, fetch func(context.Context) (io.ReadCloser, error)) error {
	body, err := fetch(ctx)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
