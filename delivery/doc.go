// Package delivery is how an OfficialAccountSubscription reaches its sinks, apart from the
// reconciler that drives it:
//
//   - Make, a pure function, plans one reconcile: from the event as the cache has it, the
//     sinks it names, the Ledger's view and the time, the status the event should have and
//     what to do (start deliveries, write, put the first write off, delete);
//   - the Ledger holds, under one lock and per event, what this process knows beyond the
//     stored status: deliveries in flight, outcomes not yet written, the last status written,
//     tombstones of deleted events, and first-write deferrals;
//   - the Lanes run the deliveries, one lane per sink with its own in-flight limit, and the
//     Deliverer makes each attempt with the sink as the cache has it when its turn comes.
//
// The rest (retry policy, matching, status conditions, sink activity, the registry's
// resolver) serves those three.
package delivery
