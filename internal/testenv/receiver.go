package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Request is one delivery a Receiver got.
type Request struct {
	Header   http.Header
	Body     []byte
	Received time.Time
}

// Receiver is a real HTTP server standing in for an app's endpoint. It answers with the
// given status codes in turn, then 200 for ever.
type Receiver struct {
	*httptest.Server
	mu       sync.Mutex
	answers  []int
	requests []Request
}

// NewReceiver starts a receiver that answers the given codes first.
func NewReceiver(answers ...int) *Receiver {
	r := &Receiver{answers: answers}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests = append(r.requests, Request{Header: req.Header.Clone(), Body: body, Received: time.Now()})
	code := http.StatusOK
	if len(r.answers) > 0 {
		code, r.answers = r.answers[0], r.answers[1:]
	}
	r.mu.Unlock()
	w.WriteHeader(code)
}

// Requests returns the deliveries so far.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.requests...)
}

// Answer queues more status codes to answer with.
func (r *Receiver) Answer(codes ...int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers = append(r.answers, codes...)
}
