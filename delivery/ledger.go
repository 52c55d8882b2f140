package delivery

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// Ledger is what this process knows of each event's deliveries that its stored status does
// not say yet, under one lock. Each record belongs to one event UID and holds:
//
//   - the deliveries in flight (running or queued in a lane), from Begin to Finish or Abandon;
//   - the outcomes not yet written, from Finish until a status that records them is stored
//     (Written, or Observe finding it in the cache), so that a sink that accepted an event
//     does not get it again because the status write after it failed;
//   - the resourceVersion last written, until the cache holds it (Observe): a reconcile of
//     an older copy would deliver again;
//   - a tombstone once the event is deleted, until the cache says NotFound (Forget): the
//     cache may still hold the object without a status, which would look like a new event;
//   - the first-write deferral: when a new event's first status write was put off, and the
//     sinks it was matched with then.
//
// An outcome is versioned by (retry round, attempts): the round is the retry annotation's
// value the delivery belongs to (status.lastHandledRetry). A retry that starts a failed
// delivery over voids the outcomes of earlier rounds for it, so its attempts are never
// compared with a count from before the reset.
//
// One ledger serves a whole process, across terms of leadership: a replica elected again
// still knows what it delivered. At-least-once stays the contract: a crash between a
// sink's answer and the status write repeats that delivery. The zero value is ready.
type Ledger struct {
	mu     sync.Mutex
	events map[types.NamespacedName]*record
}

type record struct {
	uid       types.UID
	inFlight  map[string]string  // sink -> round
	outcomes  map[string]Outcome // sink -> newest outcome not written
	written   string             // resourceVersion last written, until the cache has it
	deleted   bool
	deferral  *deferral
	voidRound map[string]string // sink -> the round a retry reset it in: other rounds' outcomes are void
}

// Outcome is a delivery as an attempt left it, in the round it was made in.
type Outcome struct {
	Round    string
	Delivery v1alpha1.SinkDelivery
}

type deferral struct {
	since time.Time
	sinks []string
}

// View is the part of an event's record a plan reads: a copy, safe to keep.
type View struct {
	// InFlight are the sinks with a delivery running or queued.
	InFlight map[string]bool
	// Outcomes are the outcomes not yet written, by sink.
	Outcomes map[string]Outcome
	// DeferredSince is when the first status write was first put off; zero if it was not.
	DeferredSince time.Time
	// DeferredSinks are the sinks the event was matched with then.
	DeferredSinks []string
	// Round is the retry round the deliveries in flight and the outcomes belong to, when
	// HasRound: a first plan starts from it, not from the annotation as it is now, so that
	// a retry asked for before the first write does not hide what was delivered.
	Round    string
	HasRound bool
}

// Freshness is what Observe found of the cache's copy of an event.
type Freshness int

const (
	// Fresh: the copy is at least as new as anything this process wrote.
	Fresh Freshness = iota
	// Behind: the cache has not caught up with this process's last status write.
	Behind
	// Deleted: this process deleted the event; the cache has not seen it go.
	Deleted
)

func keyOf(sub *v1alpha1.OfficialAccountSubscription) types.NamespacedName {
	return types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name}
}

// recordOf returns sub's record, creating it when create is set. A record of another UID
// under the same name (an event deleted and stored again) is replaced: the cache no longer
// shows the old one.
func (l *Ledger) recordOf(sub *v1alpha1.OfficialAccountSubscription, create bool) *record {
	key := keyOf(sub)
	rec := l.events[key]
	if rec != nil && rec.uid == sub.UID {
		return rec
	}
	if !create {
		return nil
	}
	if l.events == nil {
		l.events = map[types.NamespacedName]*record{}
	}
	rec = &record{uid: sub.UID} // its maps are made when first written: most records only hold a written resourceVersion
	l.events[key] = rec
	return rec
}

// tidy drops a record that holds nothing.
func (l *Ledger) tidy(key types.NamespacedName, rec *record) {
	if rec != nil && len(rec.inFlight) == 0 && len(rec.outcomes) == 0 && rec.written == "" && !rec.deleted &&
		rec.deferral == nil && len(rec.voidRound) == 0 {
		delete(l.events, key)
	}
}

// Observe reports whether the cache's copy of an event can be planned from, and drops the
// outcomes its stored status already records.
func (l *Ledger) Observe(sub *v1alpha1.OfficialAccountSubscription) Freshness {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.recordOf(sub, false)
	if rec == nil {
		return Fresh
	}
	if rec.deleted {
		return Deleted
	}
	if rec.written != "" {
		if !resourceVersionAtLeast(sub.ResourceVersion, rec.written) {
			return Behind
		}
		rec.written = ""
	}
	l.dropRecorded(rec, &sub.Status)
	l.tidy(keyOf(sub), rec)
	return Fresh
}

// View copies what the ledger holds of sub.
func (l *Ledger) View(sub *v1alpha1.OfficialAccountSubscription) View {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := View{InFlight: map[string]bool{}, Outcomes: map[string]Outcome{}}
	rec := l.recordOf(sub, false)
	if rec == nil {
		return v
	}
	for sink, round := range rec.inFlight {
		v.InFlight[sink] = true
		v.Round, v.HasRound = round, true
	}
	for sink, o := range rec.outcomes {
		v.Outcomes[sink] = Outcome{Round: o.Round, Delivery: *o.Delivery.DeepCopy()}
		v.Round, v.HasRound = o.Round, true
	}
	if rec.deferral != nil {
		v.DeferredSince, v.DeferredSinks = rec.deferral.since, slices.Clone(rec.deferral.sinks)
	}
	return v
}

// Begin records a delivery of sub to sink as in flight in round, unless one is in flight
// already or an outcome newer than the planned delivery (after that many attempts) waits
// to be written: the sink has answered an attempt the plan did not see. It reports
// whether it did.
func (l *Ledger) Begin(sub *v1alpha1.OfficialAccountSubscription, sink, round string, attempts int32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.recordOf(sub, true)
	if _, busy := rec.inFlight[sink]; busy {
		return false
	}
	if o, kept := rec.outcomes[sink]; kept && o.Round == round && o.Delivery.Attempts > attempts {
		return false
	}
	if rec.inFlight == nil {
		rec.inFlight = map[string]string{}
	}
	rec.inFlight[sink] = round
	return true
}

// InFlight reports whether the event, by name, has a delivery to the sink running or
// queued.
func (l *Ledger) InFlight(key types.NamespacedName, sink string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.events[key]
	if rec == nil {
		return false
	}
	_, busy := rec.inFlight[sink]
	return busy
}

// Abandon ends a delivery that made no attempt (its lane was full, the term ended, its
// sink was gone or suspended when its turn came).
func (l *Ledger) Abandon(sub *v1alpha1.OfficialAccountSubscription, sink string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rec := l.recordOf(sub, false); rec != nil {
		delete(rec.inFlight, sink)
		l.tidy(keyOf(sub), rec)
	}
}

// Finish ends a delivery with the state its attempt left it in, kept until written. An
// outcome of a round a retry has since voided is dropped.
func (l *Ledger) Finish(sub *v1alpha1.OfficialAccountSubscription, d v1alpha1.SinkDelivery) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.recordOf(sub, false)
	if rec == nil {
		return // forgotten meanwhile: the event is gone
	}
	round, ok := rec.inFlight[d.Name]
	delete(rec.inFlight, d.Name)
	if void, reset := rec.voidRound[d.Name]; !ok || (reset && void != round) {
		l.tidy(keyOf(sub), rec)
		return
	}
	if rec.outcomes == nil {
		rec.outcomes = map[string]Outcome{}
	}
	rec.outcomes[d.Name] = Outcome{Round: round, Delivery: *d.DeepCopy()}
}

// NewRound records that a retry moved sub to round: the deliveries it started over (reset)
// lose their outcomes of earlier rounds, and the others carry theirs into the new round.
func (l *Ledger) NewRound(sub *v1alpha1.OfficialAccountSubscription, round string, reset []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.recordOf(sub, true)
	for sink, o := range rec.outcomes {
		if slices.Contains(reset, sink) {
			delete(rec.outcomes, sink)
		} else {
			o.Round = round
			rec.outcomes[sink] = o
		}
	}
	for sink := range rec.inFlight {
		if !slices.Contains(reset, sink) {
			rec.inFlight[sink] = round
		}
	}
	for _, sink := range reset {
		if rec.voidRound == nil {
			rec.voidRound = map[string]string{}
		}
		rec.voidRound[sink] = round
	}
	l.tidy(keyOf(sub), rec)
}

// Defer records that sub's first status write was put off at since, matched with sinks;
// an earlier deferral keeps its time and sinks.
func (l *Ledger) Defer(sub *v1alpha1.OfficialAccountSubscription, since time.Time, sinks []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rec := l.recordOf(sub, true); rec.deferral == nil {
		rec.deferral = &deferral{since: since, sinks: slices.Clone(sinks)}
	}
}

// Written records a stored status: the cache must reach its resourceVersion before the
// event is planned again, and the outcomes it records are done.
func (l *Ledger) Written(sub *v1alpha1.OfficialAccountSubscription) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.recordOf(sub, true)
	rec.written, rec.deferral = sub.ResourceVersion, nil
	for sink := range rec.voidRound {
		if _, busy := rec.inFlight[sink]; !busy { // one in flight from before the reset is still to be voided
			delete(rec.voidRound, sink)
		}
	}
	l.dropRecorded(rec, &sub.Status)
	l.tidy(keyOf(sub), rec)
}

// Deleted records that sub was deleted: until the cache says NotFound, its copy there is
// not planned from.
func (l *Ledger) Deleted(sub *v1alpha1.OfficialAccountSubscription) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.recordOf(sub, true)
	rec.deleted, rec.outcomes, rec.deferral = true, nil, nil
}

// Forget drops what is kept for the event of that name, once the cache says it is gone.
func (l *Ledger) Forget(key types.NamespacedName) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.events, key)
}

// EndTerm forgets what only held for the term that ended: the next term's cache starts
// from a fresh list, which has every status written and no deleted event, and a first
// write put off is matched again. The outcomes not written stay, for whoever writes them.
// Call it once the term's deliveries have ended and its outcomes were written.
func (l *Ledger) EndTerm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, rec := range l.events {
		if rec.deleted {
			delete(l.events, key)
			continue
		}
		rec.inFlight, rec.written, rec.deferral, rec.voidRound = nil, "", nil, nil
		l.tidy(key, rec)
	}
}

// Unwritten lists the events with outcomes not yet written.
func (l *Ledger) Unwritten() []types.NamespacedName {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []types.NamespacedName
	for key, rec := range l.events {
		if len(rec.outcomes) > 0 && !rec.deleted {
			keys = append(keys, key)
		}
	}
	return keys
}

// dropRecorded drops the outcomes a stored status records: same round, as many attempts or
// more. Outcomes for other sinks, whose deliveries ended after the status was computed,
// stay.
func (l *Ledger) dropRecorded(rec *record, st *v1alpha1.OfficialAccountSubscriptionStatus) {
	if st.ObservedGeneration == 0 {
		return // no status stored yet
	}
	for _, d := range st.Sinks {
		if o, ok := rec.outcomes[d.Name]; ok && o.Round == st.LastHandledRetry && o.Delivery.Attempts <= d.Attempts {
			delete(rec.outcomes, d.Name)
		}
	}
}

// resourceVersionAtLeast reports whether have is the same as or newer than want. Resource
// versions are opaque by contract but etcd revisions in practice; where they do not parse,
// only equality counts.
func resourceVersionAtLeast(have, want string) bool {
	h, errH := strconv.ParseUint(have, 10, 64)
	w, errW := strconv.ParseUint(want, 10, 64)
	if errH != nil || errW != nil {
		return have == want
	}
	return h >= w
}
