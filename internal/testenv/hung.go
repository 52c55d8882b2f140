package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
)

// HungReceiver is a real HTTP server that reads each request and never answers it: the
// client's timeout ends the request. It records how many it held at once.
type HungReceiver struct {
	*httptest.Server
	closed              chan struct{}
	closeOnce           sync.Once
	mu                  sync.Mutex
	holding, mostAtOnce int
	started             int
}

// NewHungReceiver starts a server that never answers.
func NewHungReceiver() *HungReceiver {
	h := &HungReceiver{closed: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, req *http.Request) {
		// Reading the body to its end lets the server notice the client hanging up.
		_, _ = io.Copy(io.Discard, req.Body)
		h.mu.Lock()
		h.started++
		h.holding++
		h.mostAtOnce = max(h.mostAtOnce, h.holding)
		h.mu.Unlock()
		select {
		case <-req.Context().Done(): // the client gave up
		case <-h.closed:
		}
		h.mu.Lock()
		h.holding--
		h.mu.Unlock()
	}))
	return h
}

// Stats returns how many requests it received, and the most it held at once.
func (h *HungReceiver) Stats() (started, mostAtOnce int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started, h.mostAtOnce
}

// Close lets go of the requests it holds, then shuts the server down.
func (h *HungReceiver) Close() {
	h.closeOnce.Do(func() { close(h.closed) })
	h.Server.Close()
}
