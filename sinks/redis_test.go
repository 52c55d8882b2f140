package sinks

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

func newRedisSink(t *testing.T, srv *testenv.Redis, password string, timeout time.Duration) *Redis {
	t.Helper()
	sink, err := NewRedis(srv.URL(password), "", timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	return sink
}

// redisState reads what the sink keeps of an account: its subscribers, sorted, and each
// one's last event time.
func redisState(t *testing.T, srv *testenv.Redis, account string) ([]string, map[string]string) {
	t.Helper()
	opts, err := redis.ParseURL(srv.URL(srv.Password))
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	key := "oasub:1400000000:" + account
	members, err := client.SMembers(context.Background(), key+":subscribers").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(members)
	events, err := client.HGetAll(context.Background(), key+":events").Result()
	if err != nil {
		t.Fatal(err)
	}
	return members, events
}

func redisDeliver(t *testing.T, sink *Redis, events ...*v1alpha1.OfficialAccountSubscription) {
	t.Helper()
	for _, ev := range events {
		if err := sink.Deliver(context.Background(), ev); err != nil {
			t.Fatalf("Deliver %s: %v", ev.Name, err)
		}
	}
}

// Newest event time wins, whatever the order and however often events come; a split
// event's parts each apply their subscribers.
func TestRedisNewestEventWins(t *testing.T) {
	srv := testenv.StartRedis(t)
	sink := newRedisSink(t, srv, srv.Password, 0)
	if err := sink.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	redisDeliver(t, sink,
		pgEvent("in", v1alpha1.ActionSubscribe, 1000, "jared", "leckie"),
		pgEvent("split-1", v1alpha1.ActionSubscribe, 1500, "p1"), pgEvent("split-2", v1alpha1.ActionSubscribe, 1500, "p2"),
		pgEvent("out", v1alpha1.ActionUnsubscribe, 2000, "jared"),
		pgEvent("in", v1alpha1.ActionSubscribe, 1000, "jared", "leckie"), // a repeat of an older event
		pgEvent("late", v1alpha1.ActionSubscribe, 1999, "jared"),         // older than the unsubscribe
	)
	members, events := redisState(t, srv, "@TOA#_test_for_penn")
	if !slices.Equal(members, []string{"leckie", "p1", "p2"}) || events["jared"] != "2000" || events["leckie"] != "1000" {
		t.Fatalf("subscribers %v, event times %v", members, events)
	}
}

// A snapshot is applied once complete, never from a part; it subscribes whom it lists and
// unsubscribes whom it does not, unless a newer event says otherwise; an older snapshot and
// events older than the account's destruction change nothing.
func TestRedisSnapshotsAndDestruction(t *testing.T) {
	srv := testenv.StartRedis(t)
	sink := newRedisSink(t, srv, srv.Password, 0)
	redisDeliver(t, sink,
		pgEvent("a", v1alpha1.ActionSubscribe, 1000, "gone", "stays"),
		pgEvent("newer", v1alpha1.ActionSubscribe, 5000, "newer-than-snapshot"),
		redisSnapshotPart("snap", 1, 2, 3000, "stays", "new"),
		redisSnapshotPart("snap", 1, 2, 3000, "stays", "new"), // a part delivered again
	)
	if members, _ := redisState(t, srv, "@TOA#_test_for_penn"); !slices.Equal(members, []string{"gone", "newer-than-snapshot", "stays"}) {
		t.Fatalf("after part 1 of 2: %v, want nothing applied", members)
	}
	redisDeliver(t, sink, redisSnapshotPart("snap", 2, 2, 3000, "other"))
	if members, _ := redisState(t, srv, "@TOA#_test_for_penn"); !slices.Equal(members, []string{"new", "newer-than-snapshot", "other", "stays"}) {
		t.Fatalf("after the complete snapshot: %v", members)
	}
	redisDeliver(t, sink, redisSnapshotPart("old", 1, 1, 2000, "gone", "fresh"))
	if members, _ := redisState(t, srv, "@TOA#_test_for_penn"); slices.Contains(members, "gone") || slices.Contains(members, "fresh") {
		t.Fatalf("an older snapshot was applied: %v", members)
	}
	redisDeliver(t, sink,
		pgEvent("destroyed", v1alpha1.ActionAccountDestroyed, 4000),
		pgEvent("before-destruction", v1alpha1.ActionSubscribe, 3500, "too-late"),
	)
	if members, _ := redisState(t, srv, "@TOA#_test_for_penn"); !slices.Equal(members, []string{"newer-than-snapshot"}) {
		t.Fatalf("after the destruction: %v, want only the subscriber newer than it", members)
	}
}

func redisSnapshotPart(id string, part, parts int32, at int64, subscribers ...string) *v1alpha1.OfficialAccountSubscription {
	ev := pgEvent(id+"-"+strconv.Itoa(int(part)), v1alpha1.ActionSnapshot, at, subscribers...)
	ev.Spec.Snapshot = &v1alpha1.SnapshotPart{ID: id, Part: part, Parts: parts}
	return ev
}

// A server down is retried and nothing is lost once it is back; a server that accepts
// connections and never answers holds a delivery no longer than the timeout; a wrong
// password fails the check without showing it.
func TestRedisFaults(t *testing.T) {
	srv := testenv.StartRedis(t)
	sink := newRedisSink(t, srv, srv.Password, time.Second)
	redisDeliver(t, sink, pgEvent("before", v1alpha1.ActionSubscribe, 1000, "before"))

	srv.Stop()
	during := pgEvent("during", v1alpha1.ActionSubscribe, 2000, "during")
	if err := sink.Deliver(context.Background(), during); err == nil || IsPermanent(err) {
		t.Fatalf("with the server down: err = %v, want one to retry", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	redisDeliver(t, sink, during)
	if members, _ := redisState(t, srv, "@TOA#_test_for_penn"); !slices.Equal(members, []string{"before", "during"}) {
		t.Fatalf("after the server came back: %v", members)
	}

	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	// go-redis's own read timeout is 3 s: the sink's 1 s must end it first.
	endsWithin(t, 4*time.Second, func() error {
		return sink.Deliver(context.Background(), pgEvent("frozen", v1alpha1.ActionSubscribe, 3000, "x"))
	})
	if err := srv.Thaw(); err != nil {
		t.Fatal(err)
	}

	wrong := newRedisSink(t, srv, "not-the-password", 0)
	err := wrong.Check(context.Background())
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "refused the credentials") ||
		strings.Contains(err.Error(), "not-the-password") {
		t.Fatalf("Check with a wrong password: err = %v, want a failed check that says so and does not show it", err)
	}
	if err := wrong.Deliver(context.Background(), pgEvent("w", v1alpha1.ActionSubscribe, 4000, "w")); err == nil || IsPermanent(err) ||
		!strings.Contains(err.Error(), "refused the credentials") {
		t.Fatalf("Deliver with a wrong password: err = %v, want one to retry (a password being rotated)", err)
	}
	if _, err := NewRedis("redis://:s3cret@127.0.0.1:notaport", "", 0); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("a URL that does not parse: err = %v, want one that does not show it", err)
	}
}

// A user without the rights, a key of another type or a cluster splitting the account's
// keys fail for good; a failover, a busy or loading server, or a refused password are
// waited out.
func TestRedisChecksTheRightsAndClassifiesAnswers(t *testing.T) {
	srv := testenv.StartRedis(t)
	admin, err := redis.ParseURL(srv.URL(srv.Password))
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(admin)
	defer client.Close()
	// A user who may run scripts only on keys of another prefix.
	if err := client.Do(context.Background(), "ACL", "SETUSER", "elsewhere", "on", ">pw", "~other:*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	elsewhere, err := NewRedis(fmt.Sprintf("redis://elsewhere:pw@127.0.0.1:%d/0", srv.Port), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer elsewhere.Close()
	if err := elsewhere.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("Check of a user kept from the sink's keys: err = %v", err)
	}
	if err := client.Set(context.Background(), "oasub:1400000000:@TOA#_test_for_penn:subscribers", "not a set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	sink := newRedisSink(t, srv, srv.Password, 0)
	if err := sink.Deliver(context.Background(), pgEvent("typed", v1alpha1.ActionSubscribe, 1000, "x")); !IsPermanent(err) {
		t.Fatalf("a key of another type: err = %v, want a failure for good", err)
	}
	for reply, permanent := range map[string]bool{"LOADING Redis is loading": false, "READONLY You can't write": false,
		"BUSY Redis is busy": false, "CROSSSLOT Keys don't hash": true, "NOPERM this user has no permissions": true} {
		if got := classifyRedisError(redisReply(reply)); IsPermanent(got) != permanent {
			t.Errorf("%q: %v, want permanent %v", reply, got, permanent)
		}
	}
}

// redisReply is an error answer of the server, as go-redis returns it.
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}
