package delivery

import (
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// firstWriteDeferral is how long a new event's first status may wait for its deliveries.
// Almost all end within it, and the event then gets one status write, the final one,
// instead of "delivering" and then "delivered": a status write is the costliest request
// of an event's life, and a burst of callbacks queues deliveries for many seconds. An
// event whose deliveries are still under way after it gets the "delivering" status (so
// a hung sink's events show up as pending after its timeout, or after this at most).
const firstWriteDeferral = 30 * time.Second

// replayRetentionRecheck is how often an event whose retention a running replay holds
// looks again whether the replay has completed.
const replayRetentionRecheck = 30 * time.Second

// SinkState is what a plan needs to know of a SubscriptionSink an event names, as the
// cache has it.
type SinkState struct {
	Exists    bool
	Suspended bool
	// Held: the sink's circuit is open and no probe is due; its deliveries wait.
	Held bool
	// ProbeDue: the sink's circuit is open and its probe is due: a delivery starts whatever
	// its own next attempt time.
	ProbeDue bool
	// GiveUpAfter is the sink's retry policy's, for failing a held delivery in time.
	GiveUpAfter time.Duration
	// MaxInFlight is the size of the sink's lane, for starting its deliveries.
	MaxInFlight int
	// DeadLetterSink is the sink its failed deliveries go to, if it names one.
	DeadLetterSink string
}

// StateOf is what a plan needs of a sink the cache has, its circuit as it is now.
func StateOf(sink *v1alpha1.SubscriptionSink, circuit CircuitGate) SinkState {
	st := SinkState{Exists: true, Suspended: sink.Spec.Suspend, Held: circuit == Holding, ProbeDue: circuit == Probing,
		GiveUpAfter: retryPolicyOf(sink.Spec.Retry).giveUpAfter, MaxInFlight: MaxInFlight(sink.Spec.MaxInFlight)}
	if ref := sink.Spec.DeadLetterSinkRef; ref != nil {
		st.DeadLetterSink = ref.Name
	}
	return st
}

// Settings are the operator's delivery settings a plan follows.
type Settings struct {
	DeliveredRetention time.Duration
	FailedRetention    time.Duration
	// SinkNotFoundGrace is how long a delivery whose sink is missing waits for a sink of
	// that name to come back before it fails.
	SinkNotFoundGrace time.Duration
}

// Input is everything a plan is made from. Plan reads it and changes nothing in it.
type Input struct {
	// Event is the cache's copy of the event.
	Event *v1alpha1.OfficialAccountSubscription
	// Matching are the names of the sinks that match the event now, listed as of the event;
	// read only when NeedsMatching says so.
	Matching []string
	// Sinks are the sinks the event's deliveries name, by name; a name not here does not
	// exist.
	Sinks map[string]SinkState
	// Replays are the live replays that labelled the event, by name: a replay not here
	// (deleted, or a label of an earlier replay of that name) starts nothing more.
	Replays map[string]ReplayTarget
	Ledger  View
	Now     time.Time
	Settings
	// TermOver: the reconcilers have stopped, and the plan only records what the sinks
	// answered: nothing is started, no sink is judged missing or suspended, and a retry
	// request waits for the next term.
	TermOver bool
}

// Plan is what a reconcile does to an event: the status it should have, and what to do
// to get there. Executing it is the reconciler's part.
type Plan struct {
	// Status is the event's new status.
	Status v1alpha1.OfficialAccountSubscriptionStatus
	// Reset lists the deliveries a retry started over; NewRound tells the ledger when a
	// retry was handled.
	NewRound bool
	Reset    []string
	// Start are the deliveries to hand to their sinks' lanes, as the status has them.
	Start []v1alpha1.SinkDelivery
	// GaveUp are the deliveries this plan failed (their sink did not come back in time),
	// for their Warning Events.
	GaveUp []v1alpha1.SinkDelivery
	// WaitsForResume names the sinks whose suspension holds a delivery of this plan: if one
	// resumed while the plan was made, the event must be looked at again (see the reconciler).
	WaitsForResume []string
	// Delete: the event's life is over (retention, or delivered and not kept).
	Delete bool
	// Write: the status changed and is to be stored.
	Write bool
	// DeferredSince, when set, puts the first status write off: every delivery is under way
	// (see firstWriteDeferral). The ledger keeps it with the sinks matched.
	DeferredSince time.Time
	// RequeueAfter is when to look again: the soonest due attempt, deferral or retention
	// deadline; 0 for never (a lane's end, or a watch, wakes the event).
	RequeueAfter time.Duration
}

// NeedsMatching reports whether a plan for the event needs the sinks that match it now:
// at its first reconcile (unless its first write was put off, which keeps the sinks it
// was matched with then) and when the retry annotation asks for a new round.
func NeedsMatching(sub *v1alpha1.OfficialAccountSubscription, ledger View) bool {
	first := sub.Status.ObservedGeneration == 0 && ledger.DeferredSince.IsZero()
	return first || sub.Annotations[v1alpha1.AnnotationRetry] != sub.Status.LastHandledRetry
}

// Make plans one reconcile of an event: outcomes not yet written come first (their sinks
// have answered), then a retry request, then the deliveries that are due; the status that
// follows is written once, put off, or replaced by the event's deletion.
func Make(in Input) Plan {
	var p Plan
	sub := in.Event
	if deadline, ok := retentionDeadline(&sub.Status, in.DeliveredRetention, in.FailedRetention); ok && !in.Now.Before(deadline) &&
		!holdsRetention(&sub.Status, in.Replays) {
		p.Delete = true
		return p
	}
	st := sub.Status.DeepCopy()
	first := st.ObservedGeneration == 0
	if first {
		names := in.Matching
		if !in.Ledger.DeferredSince.IsZero() {
			names = in.Ledger.DeferredSinks
		}
		st.Sinks = pendingDeliveries(names)
		st.LastHandledRetry = sub.Annotations[v1alpha1.AnnotationRetry]
		if in.Ledger.HasRound { // deliveries began before the annotation changed
			st.LastHandledRetry = in.Ledger.Round
		}
	}
	applyOutcomes(st, in.Ledger.Outcomes)
	if retry := sub.Annotations[v1alpha1.AnnotationRetry]; retry != st.LastHandledRetry && !in.TermOver {
		st.Sinks, p.Reset = rematch(st.Sinks, in.Matching)
		st.LastHandledRetry, p.NewRound = retry, true
		// Attempts made in the new round, whose status write failed, count; the reset
		// deliveries' outcomes of the earlier round do not.
		applyOutcomes(st, in.Ledger.Outcomes)
	}
	if !in.TermOver {
		addDeadLetters(st, in.Sinks)
		addReplays(st, in.Replays, in.Ledger.InFlight, in.Now)
		dropStoppedReplays(st, in.Replays, in.Ledger.InFlight)
	}
	due := p.dueDeliveries(st, in)
	if !in.TermOver && addDeadLetters(st, in.Sinks) {
		due.lateDeadLetters = true // the deliveries this plan failed: their dead letters start at the next reconcile
	}
	Summarize(st, sub.Generation, StatusTime(in.Now))
	p.Status = *st

	if equality.Semantic.DeepEqual(&sub.Status, st) {
		p.RequeueAfter = requeueAfter(st, due, in)
		return p
	}
	if first && allUnderWay(st, due.underWay) {
		since := in.Ledger.DeferredSince
		if since.IsZero() {
			since = in.Now
		}
		if left := since.Add(firstWriteDeferral).Sub(in.Now); left > 0 {
			p.DeferredSince, p.RequeueAfter = since, left
			return p
		}
	}
	if deliveredAndNotKept(st, in.DeliveredRetention) {
		p.Delete = true
		return p
	}
	p.Write = true
	p.RequeueAfter = requeueAfter(st, due, in)
	return p
}

// pendingDeliveries are an event's first deliveries, one per matched sink.
func pendingDeliveries(names []string) []v1alpha1.SinkDelivery {
	var out []v1alpha1.SinkDelivery
	for _, name := range names {
		out = append(out, v1alpha1.SinkDelivery{Name: name, State: v1alpha1.DeliveryPending})
	}
	sortByName(out)
	return out
}

// applyOutcomes puts into the status every kept outcome of its round that is newer than
// what it says (more attempts). A delivery the status does not list yet (its first
// write failed) is added.
func applyOutcomes(st *v1alpha1.OfficialAccountSubscriptionStatus, outcomes map[string]Outcome) {
	added := false
	for name, kept := range outcomes {
		if kept.Round != st.LastHandledRetry {
			continue
		}
		i := slices.IndexFunc(st.Sinks, func(d v1alpha1.SinkDelivery) bool { return d.Name == name })
		switch {
		case i < 0:
			st.Sinks = append(st.Sinks, *kept.Delivery.DeepCopy())
			added = true
		case kept.Delivery.Attempts > st.Sinks[i].Attempts:
			st.Sinks[i] = *kept.Delivery.DeepCopy()
		}
	}
	if added {
		sortByName(st.Sinks)
	}
}

// dueSet is what dueDeliveries found: the deliveries under way (in flight before, or
// started now), and those an open circuit holds, with when each is to give up.
type dueSet struct {
	underWay map[string]bool
	held     map[string]time.Time
	// lateDeadLetters: dead letters were added after the due deliveries were started.
	lateDeadLetters bool
}

// dueDeliveries decides, for each pending delivery whose time has come, whether it starts,
// waits for its sink (suspended, held by its open circuit, or missing within the grace
// period) or fails.
func (p *Plan) dueDeliveries(st *v1alpha1.OfficialAccountSubscriptionStatus, in Input) dueSet {
	due := dueSet{underWay: map[string]bool{}, held: map[string]time.Time{}}
	if in.TermOver {
		return due
	}
	for i := range st.Sinks {
		d := &st.Sinks[i]
		if d.State != v1alpha1.DeliveryPending {
			continue
		}
		if in.Ledger.InFlight[d.Name] {
			due.underWay[d.Name] = true
			continue
		}
		sink := in.Sinks[d.TargetSink()]
		if sink.Exists && sink.Held && !sink.Suspended && d.SinkMissingSince == nil {
			if deadline := p.holdDelivery(d, sink, in.Event.Spec.ReceivedTime.Time, in.Now); !deadline.IsZero() {
				due.held[d.Name] = deadline
			}
			continue
		}
		if d.NextAttemptTime != nil && d.NextAttemptTime.After(in.Now) && d.SinkMissingSince == nil && !sink.ProbeDue {
			continue
		}
		if !sink.Exists {
			if awaitMissingSink(d, in.Now, in.SinkNotFoundGrace) {
				p.GaveUp = append(p.GaveUp, *d)
			}
			continue
		}
		if d.SinkMissingSince != nil {
			d.SinkMissingSince, d.NextAttemptTime, d.LastError = nil, nil, ""
		}
		if sink.Suspended {
			// No time of its own: the sink watch wakes the delivery when the sink resumes.
			p.WaitsForResume = append(p.WaitsForResume, d.TargetSink())
			d.NextAttemptTime = nil
			if d.SuspendedSince == nil && d.FirstAttemptTime != nil {
				since := StatusTime(in.Now)
				d.SuspendedSince = &since
			}
			continue
		}
		p.Start = append(p.Start, resumed(*d.DeepCopy(), in.Now))
		due.underWay[d.Name] = true
	}
	return due
}

// holdDelivery leaves a delivery that its sink's open circuit holds as it is: no attempt,
// no status write, no time of its own (the circuit's probe or closing wakes it), until its
// round has run for the sink's giveUpAfter, the time held included (counted from the
// event's receipt if it was never attempted, and without the time its sink was
// suspended); then it fails. It returns when it is to give up, zero once it has.
func (p *Plan) holdDelivery(d *v1alpha1.SinkDelivery, sink SinkState, received, now time.Time) time.Time {
	first := received
	if r := resumed(*d, now); r.FirstAttemptTime != nil {
		first = r.FirstAttemptTime.Time
	}
	if deadline := first.Add(sink.GiveUpAfter); now.Before(deadline) {
		return deadline
	}
	giveUp(d, v1alpha1.FailureRetriesExhausted, fmt.Sprintf("gave up after %s, its sink's circuit open; the last error: %s",
		sink.GiveUpAfter, d.LastError))
	p.GaveUp = append(p.GaveUp, *d)
	return time.Time{}
}

// resumed is a delivery about to start again: the time its sink was suspended is taken
// off its round, so that it does not count towards giveUpAfter.
func resumed(d v1alpha1.SinkDelivery, now time.Time) v1alpha1.SinkDelivery {
	if d.SuspendedSince != nil {
		if d.FirstAttemptTime != nil {
			shifted := StatusTime(d.FirstAttemptTime.Add(now.Sub(d.SuspendedSince.Time)))
			d.FirstAttemptTime = &shifted
		}
		d.SuspendedSince = nil
	}
	return d
}

// awaitMissingSink gives a delivery whose sink does not exist a grace period in which a
// sink of that name coming back (deleted and re-created by Helm or Argo CD) resumes it;
// after that, the delivery fails, and it reports so.
func awaitMissingSink(d *v1alpha1.SinkDelivery, now time.Time, grace time.Duration) (failed bool) {
	if d.SinkMissingSince == nil {
		since := StatusTime(now)
		d.SinkMissingSince = &since
	}
	deadline := d.SinkMissingSince.Add(grace)
	if !now.Before(deadline) {
		giveUp(d, v1alpha1.FailureSinkNotFound, fmt.Sprintf("SubscriptionSink %q does not exist, and none of that name came back within %s",
			d.TargetSink(), grace))
		return true
	}
	next := metav1Later(deadline)
	d.NextAttemptTime = &next
	d.LastError = fmt.Sprintf("SubscriptionSink %q does not exist; waiting until %s for a sink of that name",
		d.TargetSink(), next.UTC().Format(time.RFC3339))
	return false
}

// giveUp fails a delivery for good, until the retry annotation starts it over; reason is
// one of the v1alpha1.Failure reasons, message the error.
func giveUp(d *v1alpha1.SinkDelivery, reason, message string) {
	d.State, d.NextAttemptTime, d.LastError, d.FailureReason = v1alpha1.DeliveryFailed, nil, truncate(message), reason
}

// allUnderWay reports whether every pending delivery is under way, and at least one is.
func allUnderWay(st *v1alpha1.OfficialAccountSubscriptionStatus, underWay map[string]bool) bool {
	for _, d := range st.Sinks {
		if d.State == v1alpha1.DeliveryPending && !underWay[d.Name] {
			return false
		}
	}
	return len(underWay) > 0
}

// requeueAfter is the time until the soonest due attempt, give-up deadline of a held
// delivery, or retention deadline. Deliveries under way are left out: their end queues the
// event again; so are held deliveries' attempt times: the circuit wakes them.
func requeueAfter(st *v1alpha1.OfficialAccountSubscriptionStatus, due dueSet, in Input) time.Duration {
	var soonest time.Time
	consider := func(t time.Time) {
		if soonest.IsZero() || t.Before(soonest) {
			soonest = t
		}
	}
	for _, d := range st.Sinks {
		if d.State != v1alpha1.DeliveryPending || due.underWay[d.Name] {
			continue
		}
		if deadline, held := due.held[d.Name]; held {
			consider(deadline)
		} else if d.NextAttemptTime != nil {
			consider(d.NextAttemptTime.Time)
		}
	}
	if deadline, ok := retentionDeadline(st, in.DeliveredRetention, in.FailedRetention); ok {
		if !deadline.After(in.Now) && holdsRetention(st, in.Replays) {
			deadline = in.Now.Add(replayRetentionRecheck) // a replay holds it: look again, not at once
		}
		consider(deadline)
	}
	if due.lateDeadLetters {
		consider(in.Now)
	}
	if soonest.IsZero() {
		return 0
	}
	// Never 0 once something is due: RequeueAfter 0 would mean "do not requeue".
	return max(soonest.Sub(in.Now), time.Millisecond)
}
