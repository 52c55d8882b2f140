package sinks

import (
	"context"
	"sync"
)

// Registry keeps one built Sink per SubscriptionSink so that connections and pools are
// reused across reconciles. A sink is rebuilt when its configuration's fingerprint
// changes (a new generation, a changed Secret), and the old one closed.
//
// Building a sink may dial its destination and closing one waits for the deliveries that
// use it, so neither happens under the registry's lock: a sink that is slow to build or
// to close delays only callers of that same sink.
type Registry struct {
	mu      sync.Mutex
	entries map[string]*entry
	closing sync.WaitGroup
}

// entry is one sink, built once by the first caller; the others wait for ready.
type entry struct {
	fingerprint string
	ready       chan struct{}
	sink        Sink
	err         error
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{entries: map[string]*entry{}} }

// Get returns the sink registered under key with this fingerprint, building it if needed.
// A failed build is not kept: the next Get tries again.
func (r *Registry) Get(ctx context.Context, key, fingerprint string, build func() (Sink, error)) (Sink, error) {
	r.mu.Lock()
	cur, ok := r.entries[key]
	if ok && cur.fingerprint == fingerprint {
		r.mu.Unlock()
		select {
		case <-cur.ready:
			return cur.sink, cur.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e := &entry{fingerprint: fingerprint, ready: make(chan struct{})}
	r.entries[key] = e
	r.mu.Unlock()
	if ok {
		r.closeLater(cur)
	}

	e.sink, e.err = build()
	close(e.ready)
	if e.err != nil {
		r.mu.Lock()
		if r.entries[key] == e {
			delete(r.entries, key)
		}
		r.mu.Unlock()
	}
	return e.sink, e.err
}

// Forget closes and drops the sink under key, when its SubscriptionSink is gone.
func (r *Registry) Forget(key string) {
	r.mu.Lock()
	cur, ok := r.entries[key]
	delete(r.entries, key)
	r.mu.Unlock()
	if ok {
		r.closeLater(cur)
	}
}

// CloseAll closes and drops every sink, and waits for every close, when the reconcilers
// that used them stop.
func (r *Registry) CloseAll() {
	r.mu.Lock()
	for key, cur := range r.entries {
		delete(r.entries, key)
		r.closeLater(cur)
	}
	r.mu.Unlock()
	r.closing.Wait()
}

// closeLater closes e's sink once it is built, off the caller's path: closing a pool waits
// for the deliveries still using it.
func (r *Registry) closeLater(e *entry) {
	r.closing.Add(1)
	go func() {
		defer r.closing.Done()
		<-e.ready
		if e.sink != nil {
			_ = e.sink.Close()
		}
	}()
}
