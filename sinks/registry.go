package sinks

import (
	"sync"
)

// Registry keeps one built Sink per SubscriptionSink so that connections and pools are
// reused across reconciles. A sink is rebuilt when its configuration's fingerprint
// changes (a new generation, a changed Secret), and the old one closed.
type Registry struct {
	mu    sync.Mutex
	sinks map[string]registered
}

type registered struct {
	fingerprint string
	sink        Sink
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{sinks: map[string]registered{}} }

// Get returns the sink registered under key with this fingerprint, building it if needed.
func (r *Registry) Get(key, fingerprint string, build func() (Sink, error)) (Sink, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.sinks[key]; ok {
		if cur.fingerprint == fingerprint {
			return cur.sink, nil
		}
		_ = cur.sink.Close()
		delete(r.sinks, key)
	}
	s, err := build()
	if err != nil {
		return nil, err
	}
	r.sinks[key] = registered{fingerprint: fingerprint, sink: s}
	return s, nil
}

// Forget closes and drops the sink under key, when its SubscriptionSink is gone.
func (r *Registry) Forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.sinks[key]; ok {
		_ = cur.sink.Close()
		delete(r.sinks, key)
	}
}

// CloseAll closes and drops every sink, when the reconcilers that used them stop.
func (r *Registry) CloseAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, cur := range r.sinks {
		_ = cur.sink.Close()
		delete(r.sinks, key)
	}
}
