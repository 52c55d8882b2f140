package delivery

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

var planNow = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// stored is an event whose status was written with these deliveries, at round.
func stored(round string, deliveries ...v1alpha1.SinkDelivery) *v1alpha1.OfficialAccountSubscription {
	sub := &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: "events", Name: "oasub-1", UID: "u1",
		Generation: 1, ResourceVersion: "10"}}
	sub.Spec.ReceivedTime = metav1.NewTime(planNow.Add(-time.Minute))
	sub.Status.Sinks = deliveries
	sub.Status.LastHandledRetry = round
	if round != "" {
		sub.Annotations = map[string]string{v1alpha1.AnnotationRetry: round}
	}
	Summarize(&sub.Status, 1, StatusTime(planNow.Add(-time.Minute)))
	return sub
}

func fresh() *v1alpha1.OfficialAccountSubscription {
	return &v1alpha1.OfficialAccountSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: "events", Name: "oasub-1", UID: "u1",
		Generation: 1, ResourceVersion: "9"},
		Spec: v1alpha1.OfficialAccountSubscriptionSpec{ReceivedTime: metav1.NewTime(planNow)}}
}

func withRetry(sub *v1alpha1.OfficialAccountSubscription, value string) *v1alpha1.OfficialAccountSubscription {
	sub = sub.DeepCopy()
	sub.Annotations = map[string]string{v1alpha1.AnnotationRetry: value}
	return sub
}

func pendingTo(name string) v1alpha1.SinkDelivery {
	return v1alpha1.SinkDelivery{Name: name, State: v1alpha1.DeliveryPending}
}

func deliveredTo(name string, attempts int32) v1alpha1.SinkDelivery {
	return v1alpha1.SinkDelivery{Name: name, State: v1alpha1.DeliveryDelivered, Attempts: attempts}
}

func failedAt(name string, attempts int32) v1alpha1.SinkDelivery {
	return v1alpha1.SinkDelivery{Name: name, State: v1alpha1.DeliveryFailed, Attempts: attempts, LastError: "400 Bad Request"}
}

func retryingAt(name string, attempts int32, next time.Time) v1alpha1.SinkDelivery {
	t := metav1.NewTime(next)
	return v1alpha1.SinkDelivery{Name: name, State: v1alpha1.DeliveryPending, Attempts: attempts, NextAttemptTime: &t, LastError: "503"}
}

var bothSinks = map[string]SinkState{"a": {Exists: true}, "b": {Exists: true}}

// lettering: sink a sends its failed deliveries to sink dl.
var lettering = map[string]SinkState{"a": {Exists: true, DeadLetterSink: "dl"}, "dl": {Exists: true}}

func deadLetter(state v1alpha1.DeliveryState) v1alpha1.SinkDelivery {
	return v1alpha1.SinkDelivery{Name: "a/deadletter", State: state, DeadLetterOf: "a", DeadLetterSink: "dl", Attempts: 1}
}

// replayTo is a live, completed replay "r" to the sink.
func replayTo(sink string) map[string]ReplayTarget {
	return map[string]ReplayTarget{"r": {UID: "uid-r", Sink: sink}}
}

// runningReplayTo is a live replay "r" to the sink that has not completed.
func runningReplayTo(sink string) map[string]ReplayTarget {
	return map[string]ReplayTarget{"r": {UID: "uid-r", Sink: sink, Running: true}}
}

// replayDelivery is replay r's delivery of the event to sink a.
func replayDelivery(state v1alpha1.DeliveryState) v1alpha1.SinkDelivery {
	return v1alpha1.SinkDelivery{Name: "replay/r", State: state, Replay: "r", ReplaySink: "a", ReplayUID: "uid-r"}
}

// earlierReplayDelivery is the delivery of a replay deleted since, of the same name as r.
func earlierReplayDelivery(state v1alpha1.DeliveryState) v1alpha1.SinkDelivery {
	d := replayDelivery(state)
	d.ReplayUID = "uid-earlier"
	return d
}

// receivedLongAgo is an event received two days ago, as a replay of failed events finds it.
func receivedLongAgo(sub *v1alpha1.OfficialAccountSubscription) *v1alpha1.OfficialAccountSubscription {
	sub.Spec.ReceivedTime = metav1.NewTime(planNow.Add(-48 * time.Hour))
	return sub
}

// heldSink is a sink whose open circuit holds its deliveries, giving up after an hour.
var heldSink = map[string]SinkState{"a": {Exists: true, Held: true, GiveUpAfter: time.Hour}}

// since sets the delivery's round to have begun at first.
func since(d v1alpha1.SinkDelivery, first time.Time) v1alpha1.SinkDelivery {
	t := metav1.NewTime(first)
	d.FirstAttemptTime = &t
	return d
}

func TestMake(t *testing.T) {
	type want struct {
		start       []string
		states      map[string]v1alpha1.DeliveryState
		write       bool
		delete      bool
		deferred    bool
		reset       []string
		readyReason string
		absent      []string
	}
	tests := []struct {
		name string
		in   Input
		want want
	}{
		{name: "a new event is matched, its deliveries start, and its first write waits for them",
			in:   Input{Event: fresh(), Matching: []string{"a", "b"}, Sinks: bothSinks},
			want: want{start: []string{"a", "b"}, deferred: true, states: map[string]v1alpha1.DeliveryState{"a": "Pending", "b": "Pending"}}},
		{name: "a deferred event keeps the sinks it was matched with, and is written once both answered",
			in: Input{Event: fresh(), Matching: []string{"a", "b", "later"}, Sinks: bothSinks, Settings: Settings{DeliveredRetention: time.Hour},
				Ledger: View{DeferredSince: planNow.Add(-time.Second), DeferredSinks: []string{"a", "b"},
					Outcomes: map[string]Outcome{"a": {Delivery: deliveredTo("a", 1)}, "b": {Delivery: deliveredTo("b", 1)}}}},
			want: want{write: true, readyReason: v1alpha1.ReasonDelivered,
				states: map[string]v1alpha1.DeliveryState{"a": "Delivered", "b": "Delivered"}}},
		{name: "a deferral that ran out is written while a delivery is still under way",
			in: Input{Event: fresh(), Sinks: bothSinks,
				Ledger: View{DeferredSince: planNow.Add(-firstWriteDeferral), DeferredSinks: []string{"a"}, InFlight: map[string]bool{"a": true}}},
			want: want{write: true, readyReason: v1alpha1.ReasonDelivering, states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "delivered and not kept: deleted instead of written",
			in: Input{Event: stored("", pendingTo("a")), Sinks: bothSinks,
				Ledger: View{Outcomes: map[string]Outcome{"a": {Delivery: deliveredTo("a", 1)}}}},
			want: want{delete: true}},
		{name: "an outcome whose status write failed is written, not delivered again",
			in: Input{Event: stored("", pendingTo("a")), Sinks: bothSinks, Settings: Settings{DeliveredRetention: time.Hour},
				Ledger: View{Outcomes: map[string]Outcome{"a": {Delivery: deliveredTo("a", 1)}}}},
			want: want{write: true, readyReason: v1alpha1.ReasonDelivered, states: map[string]v1alpha1.DeliveryState{"a": "Delivered"}}},
		{name: "a delivery in flight is not started again",
			in:   Input{Event: stored("", pendingTo("a")), Sinks: bothSinks, Ledger: View{InFlight: map[string]bool{"a": true}}},
			want: want{states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "a retry not yet due waits",
			in:   Input{Event: stored("", retryingAt("a", 2, planNow.Add(time.Second))), Sinks: bothSinks},
			want: want{states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "a retry that is due starts",
			in:   Input{Event: stored("", retryingAt("a", 2, planNow)), Sinks: bothSinks},
			want: want{start: []string{"a"}, states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "a suspended sink's delivery waits without a time",
			in:   Input{Event: stored("", retryingAt("a", 2, planNow)), Sinks: map[string]SinkState{"a": {Exists: true, Suspended: true}}},
			want: want{write: true, states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "a delivery its sink's open circuit holds makes no attempt and no write, its time past or not",
			in:   Input{Event: stored("", since(retryingAt("a", 5, planNow.Add(-time.Minute)), planNow.Add(-time.Minute))), Sinks: heldSink},
			want: want{states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "when its sink's probe is due, a delivery starts whatever its own next attempt time",
			in: Input{Event: stored("", since(retryingAt("a", 5, planNow.Add(time.Minute)), planNow.Add(-time.Minute))),
				Sinks: map[string]SinkState{"a": {Exists: true, ProbeDue: true, GiveUpAfter: time.Hour}}},
			want: want{start: []string{"a"}, states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "a held delivery whose round ran past giveUpAfter fails",
			in:   Input{Event: stored("", since(retryingAt("a", 5, planNow), planNow.Add(-time.Hour))), Sinks: heldSink},
			want: want{write: true, readyReason: v1alpha1.ReasonDeliveryFailed, states: map[string]v1alpha1.DeliveryState{"a": "Failed"}}},
		{name: "a new event whose sink's circuit is open is written at once, pending, and not started",
			in:   Input{Event: fresh(), Matching: []string{"a"}, Sinks: heldSink},
			want: want{write: true, readyReason: v1alpha1.ReasonDelivering, states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "a failed delivery whose sink names a dead-letter sink gets its dead letter, started",
			in: Input{Event: stored("", failedAt("a", 1)), Sinks: lettering},
			want: want{start: []string{"a/deadletter"}, write: true, readyReason: v1alpha1.ReasonDelivering,
				states: map[string]v1alpha1.DeliveryState{"a": "Failed", "a/deadletter": "Pending"}}},
		{name: "an attempt that failed the delivery starts its dead letter in the same plan",
			in: Input{Event: stored("", pendingTo("a")), Sinks: lettering,
				Ledger: View{Outcomes: map[string]Outcome{"a": {Delivery: failedAt("a", 1)}}}},
			want: want{start: []string{"a/deadletter"}, write: true, states: map[string]v1alpha1.DeliveryState{"a": "Failed", "a/deadletter": "Pending"}}},
		{name: "a dead letter delivered makes the event Ready, DeadLettered",
			in: Input{Event: stored("", failedAt("a", 1), deadLetter(v1alpha1.DeliveryDelivered)), Sinks: lettering,
				Settings: Settings{DeliveredRetention: time.Hour}},
			want: want{readyReason: v1alpha1.ReasonDeadLettered, states: map[string]v1alpha1.DeliveryState{"a": "Failed", "a/deadletter": "Delivered"}}},
		{name: "a dead letter that failed is not dead-lettered again, and the event is failed",
			in: Input{Event: stored("", failedAt("a", 1), deadLetter(v1alpha1.DeliveryFailed)),
				Sinks: map[string]SinkState{"a": {Exists: true, DeadLetterSink: "dl"}, "dl": {Exists: true, DeadLetterSink: "other"}}},
			want: want{readyReason: v1alpha1.ReasonDeliveryFailed, states: map[string]v1alpha1.DeliveryState{"a": "Failed", "a/deadletter": "Failed"}}},
		{name: "the retry annotation drops the dead letter and starts the delivery over",
			in: Input{Event: withRetry(stored("", failedAt("a", 1), deadLetter(v1alpha1.DeliveryDelivered)), "r1"), Matching: []string{"a"},
				Sinks: lettering, Settings: Settings{DeliveredRetention: time.Hour}},
			want: want{start: []string{"a"}, reset: []string{"a", "a/deadletter"}, write: true, states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "a missing sink's delivery waits for one of its name",
			in:   Input{Event: stored("", pendingTo("a")), Settings: Settings{SinkNotFoundGrace: time.Minute}},
			want: want{write: true, readyReason: v1alpha1.ReasonSinkNotFound, states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "the retry annotation starts a failed delivery over",
			in:   Input{Event: withRetry(stored("", failedAt("a", 3)), "r1"), Matching: []string{"a"}, Sinks: bothSinks},
			want: want{start: []string{"a"}, reset: []string{"a"}, write: true, states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		// An outcome kept after a failed status write carries the attempts of the round
		// before the retry; it must not undo the retry.
		{name: "a retry is not undone by an outcome of the round before it",
			in: Input{Event: withRetry(stored("", retryingAt("a", 2, planNow)), "r1"), Matching: []string{"a"}, Sinks: bothSinks,
				Ledger: View{Outcomes: map[string]Outcome{"a": {Delivery: failedAt("a", 3)}}}},
			want: want{start: []string{"a"}, reset: []string{"a"}, write: true, states: map[string]v1alpha1.DeliveryState{"a": "Pending"}}},
		{name: "an outcome of the retry's own round counts, once the retry's write failed",
			in: Input{Event: withRetry(stored("", failedAt("a", 3)), "r1"), Matching: []string{"a"}, Sinks: bothSinks, Settings: Settings{DeliveredRetention: time.Hour},
				Ledger: View{Outcomes: map[string]Outcome{"a": {Round: "r1", Delivery: deliveredTo("a", 1)}}}},
			want: want{reset: []string{"a"}, write: true, readyReason: v1alpha1.ReasonDelivered, states: map[string]v1alpha1.DeliveryState{"a": "Delivered"}}},
		// The first write was put off while the delivery ran; the annotation changed before
		// it was written. What was delivered in the round before stays delivered.
		{name: "a retry asked for before the first write does not deliver again",
			in: Input{Event: withRetry(fresh(), "r1"), Matching: []string{"a"}, Sinks: bothSinks, Settings: Settings{DeliveredRetention: time.Hour},
				Ledger: View{DeferredSince: planNow.Add(-time.Second), DeferredSinks: []string{"a"},
					Outcomes: map[string]Outcome{"a": {Delivery: deliveredTo("a", 1)}}, HasRound: true}},
			want: want{write: true, readyReason: v1alpha1.ReasonDelivered, states: map[string]v1alpha1.DeliveryState{"a": "Delivered"}}},
		{name: "the term is over: a retry request waits for the next term",
			in:   Input{Event: withRetry(stored("", failedAt("a", 3)), "r1"), Matching: []string{"a"}, TermOver: true},
			want: want{states: map[string]v1alpha1.DeliveryState{"a": "Failed"}}},
		{name: "retention expired: deleted",
			in:   Input{Event: stored("", deliveredTo("a", 1)), Settings: Settings{DeliveredRetention: time.Second}},
			want: want{delete: true}},
		{name: "the term is over: outcomes written, nothing started or judged missing",
			in: Input{Event: stored("", pendingTo("a"), pendingTo("b")), TermOver: true, Settings: Settings{DeliveredRetention: time.Hour},
				Ledger: View{Outcomes: map[string]Outcome{"a": {Delivery: deliveredTo("a", 1)}}}},
			want: want{write: true, readyReason: v1alpha1.ReasonDelivering, states: map[string]v1alpha1.DeliveryState{"a": "Delivered", "b": "Pending"}}},
		{name: "a live replay that labelled the event adds its delivery, started, and Ready stays as it was",
			in: Input{Event: stored("", deliveredTo("a", 1)), Sinks: bothSinks, Replays: replayTo("a"),
				Settings: Settings{DeliveredRetention: time.Hour}},
			want: want{start: []string{"replay/r"}, write: true, readyReason: v1alpha1.ReasonDelivered,
				states: map[string]v1alpha1.DeliveryState{"a": "Delivered", "replay/r": "Pending"}}},
		{name: "retention waits for a live replay's delivery to be listed",
			in: Input{Event: stored("", deliveredTo("a", 1)), Sinks: bothSinks, Replays: replayTo("a"),
				Settings: Settings{DeliveredRetention: time.Second}},
			want: want{start: []string{"replay/r"}, write: true, states: map[string]v1alpha1.DeliveryState{"replay/r": "Pending"}}},
		{name: "a replay's pending delivery holds retention, and is not started twice",
			in: Input{Event: stored("", deliveredTo("a", 1), replayDelivery(v1alpha1.DeliveryPending)), Sinks: bothSinks,
				Replays: replayTo("a"), Ledger: View{InFlight: map[string]bool{"replay/r": true}},
				Settings: Settings{DeliveredRetention: time.Second}},
			want: want{states: map[string]v1alpha1.DeliveryState{"replay/r": "Pending"}}},
		{name: "a deleted replay's pending delivery is dropped, and the event completes",
			in: Input{Event: stored("", deliveredTo("a", 1), replayDelivery(v1alpha1.DeliveryPending)), Sinks: bothSinks,
				Settings: Settings{DeliveredRetention: time.Hour}},
			want: want{write: true, readyReason: v1alpha1.ReasonDelivered, absent: []string{"replay/r"}}},
		{name: "a deleted replay's delivery under way is kept for its outcome",
			in: Input{Event: stored("", deliveredTo("a", 1), replayDelivery(v1alpha1.DeliveryPending)), Sinks: bothSinks,
				Ledger: View{InFlight: map[string]bool{"replay/r": true}}, Settings: Settings{DeliveredRetention: time.Hour}},
			want: want{states: map[string]v1alpha1.DeliveryState{"replay/r": "Pending"}}},
		{name: "a replay created again under the same name sends again: the earlier one's delivery is replaced",
			in: Input{Event: stored("", deliveredTo("a", 1), earlierReplayDelivery(v1alpha1.DeliveryDelivered)), Sinks: bothSinks,
				Replays: replayTo("a"), Settings: Settings{DeliveredRetention: time.Hour}},
			want: want{start: []string{"replay/r"}, write: true, states: map[string]v1alpha1.DeliveryState{"replay/r": "Pending"}}},
		{name: "a running replay holds the retention of an event whose delivery it ended",
			in: Input{Event: stored("", deliveredTo("a", 1), replayDelivery(v1alpha1.DeliveryDelivered)), Sinks: bothSinks,
				Replays: runningReplayTo("a"), Settings: Settings{DeliveredRetention: time.Second}},
			want: want{states: map[string]v1alpha1.DeliveryState{"replay/r": "Delivered"}}},
		{name: "once the replay completed, retention deletes the event",
			in: Input{Event: stored("", deliveredTo("a", 1), replayDelivery(v1alpha1.DeliveryDelivered)), Sinks: bothSinks,
				Replays: replayTo("a"), Settings: Settings{DeliveredRetention: time.Second}},
			want: want{delete: true}},
		{name: "an open circuit holds a replay's delivery of an old event for its own giveUpAfter, from when it was added",
			in:   Input{Event: receivedLongAgo(stored("", failedAt("a", 3))), Sinks: heldSink, Replays: replayTo("a")},
			want: want{write: true, readyReason: v1alpha1.ReasonDeliveryFailed, states: map[string]v1alpha1.DeliveryState{"replay/r": "Pending"}}},
		{name: "a replay's failed delivery neither fails the event, nor is dead-lettered, nor is reset by a retry",
			in: Input{Event: withRetry(stored("", failedAt("a", 1), replayDelivery(v1alpha1.DeliveryFailed)), "r1"),
				Matching: []string{"a"}, Sinks: lettering, Replays: replayTo("a")},
			want: want{start: []string{"a"}, reset: []string{"a"}, write: true, readyReason: v1alpha1.ReasonDelivering,
				states: map[string]v1alpha1.DeliveryState{"a": "Pending", "replay/r": "Failed"}, absent: []string{"replay/r/deadletter"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Now = planNow
			if tt.in.FailedRetention == 0 {
				tt.in.FailedRetention = 24 * time.Hour // failed events are kept: none of these expires
			}
			before := tt.in.Event.DeepCopy()
			p := Make(tt.in)
			if got := startedNames(p); !slices.Equal(got, tt.want.start) {
				t.Errorf("start %v, want %v", got, tt.want.start)
			}
			if p.Write != tt.want.write || p.Delete != tt.want.delete || !p.DeferredSince.IsZero() != tt.want.deferred {
				t.Errorf("write %v delete %v deferred %v, want %v %v %v", p.Write, p.Delete, !p.DeferredSince.IsZero(),
					tt.want.write, tt.want.delete, tt.want.deferred)
			}
			if !slices.Equal(p.Reset, tt.want.reset) {
				t.Errorf("reset %v, want %v", p.Reset, tt.want.reset)
			}
			for name, state := range tt.want.states {
				if i := slices.IndexFunc(p.Status.Sinks, func(d v1alpha1.SinkDelivery) bool { return d.Name == name }); i < 0 || p.Status.Sinks[i].State != state {
					t.Errorf("delivery to %s: %+v, want %s", name, p.Status.Sinks, state)
				}
			}
			for _, name := range tt.want.absent {
				if slices.ContainsFunc(p.Status.Sinks, func(d v1alpha1.SinkDelivery) bool { return d.Name == name }) {
					t.Errorf("deliveries %+v, want none named %s", p.Status.Sinks, name)
				}
			}
			if tt.want.readyReason != "" {
				if ready := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionReady); ready == nil || ready.Reason != tt.want.readyReason {
					t.Errorf("Ready %+v, want reason %s", ready, tt.want.readyReason)
				}
			}
			if !equality.Semantic.DeepEqual(before, tt.in.Event) {
				t.Error("Make changed its input")
			}
		})
	}
}

func startedNames(p Plan) []string {
	var out []string
	for _, d := range p.Start {
		out = append(out, d.Name)
	}
	return out
}

// A plan asks to come back when the soonest retry is due, never at 0 once one is.
func TestMakeRequeuesForTheSoonestRetry(t *testing.T) {
	in := Input{Event: stored("", retryingAt("a", 2, planNow.Add(3*time.Second)), retryingAt("b", 1, planNow.Add(time.Second))),
		Sinks: bothSinks, Now: planNow}
	if got := Make(in).RequeueAfter; got != time.Second {
		t.Fatalf("RequeueAfter %v, want 1s", got)
	}
}

// A held delivery has no time of its own: it comes back only to give up, at its round's
// giveUpAfter (from its receipt if it was never attempted); the circuit's probe or closing
// wakes it before that.
func TestMakeWakesAHeldDeliveryOnlyToGiveUp(t *testing.T) {
	in := Input{Event: stored("", since(retryingAt("a", 5, planNow.Add(-time.Minute)), planNow.Add(-time.Minute))),
		Sinks: heldSink, Now: planNow}
	if got := Make(in).RequeueAfter; got != 59*time.Minute {
		t.Fatalf("RequeueAfter %v, want 59m (the give-up deadline)", got)
	}
	in.Event = stored("", pendingTo("a")) // received a minute ago, never attempted
	if got := Make(in).RequeueAfter; got != 59*time.Minute {
		t.Fatalf("RequeueAfter %v for a held delivery never attempted, want 59m (giveUpAfter from its receipt)", got)
	}
}

// The time a sink was suspended does not count towards giveUpAfter: a delivery that finds
// its sink suspended notes when, and starts again with its round moved on by that long.
func TestMakeDoesNotCountSuspendedTimeTowardsGiveUp(t *testing.T) {
	first := planNow.Add(-2 * time.Hour)
	suspended := Make(Input{Event: stored("", since(retryingAt("a", 3, planNow), first)),
		Sinks: map[string]SinkState{"a": {Exists: true, Suspended: true}}, Now: planNow})
	d := suspended.Status.Sinks[0]
	if !suspended.Write || d.SuspendedSince == nil || !d.SuspendedSince.Time.Equal(planNow) || d.NextAttemptTime != nil {
		t.Fatalf("suspended: write %v, delivery %+v; want it written with suspendedSince now and no next attempt", suspended.Write, d)
	}

	resumedAt := planNow.Add(90 * time.Minute)
	event := stored("", d)
	resumed := Make(Input{Event: event, Sinks: bothSinks, Now: resumedAt})
	if len(resumed.Start) != 1 {
		t.Fatalf("resumed: started %v, want the delivery", startedNames(resumed))
	}
	started := resumed.Start[0]
	if want := first.Add(90 * time.Minute); started.SuspendedSince != nil || !started.FirstAttemptTime.Time.Equal(want) {
		t.Fatalf("resumed: the delivery starts with first attempt %v, suspendedSince %v; want %v and none", started.FirstAttemptTime, started.SuspendedSince, want)
	}
	if resumed.Write {
		t.Fatal("resuming wrote the status: the attempt's outcome records the moved round")
	}
}
