package sinks

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// DefaultRedisKeyPrefix and DefaultRedisTimeout apply when a sink sets none.
const (
	DefaultRedisKeyPrefix = "oasub"
	DefaultRedisTimeout   = 10 * time.Second
)

// redisSnapshotPartsTTL is how long the parts of a snapshot that never completes are kept:
// a resync completes its snapshots within hours, or stores a new one.
const redisSnapshotPartsTTL = 7 * 24 * time.Hour

// Lua scripts, each applying one event atomically (redis_*.lua beside this file).
var (
	//go:embed redis_change.lua
	redisChangeLua string
	//go:embed redis_destroyed.lua
	redisDestroyedLua string
	//go:embed redis_snapshot.lua
	redisSnapshotLua string

	redisChange    = redis.NewScript(redisChangeLua)
	redisDestroyed = redis.NewScript(redisDestroyedLua)
	redisSnapshot  = redis.NewScript(redisSnapshotLua)
)

// Redis keeps, per (SDKAppID, Official Account), the set of its current subscribers
// ("{prefix}:{sdkAppID}:{account}:subscribers", for O(1) "is X subscribed" checks) in step
// with a hash of each subscriber's last event time ("...:events"), and the account's last
// snapshot and destruction times ("...:account"). Each event is applied by one Lua script,
// atomically: an event no newer than a subscriber's last one, or than the account's
// destruction, changes nothing, so late and repeated events never undo a newer one. A
// complete snapshot is applied like the PostgreSQL sink's: its parts wait in
// "...:snapshot:{id}:members" and "...:parts" until the last one arrives.
type Redis struct {
	client  *redis.Client
	prefix  string
	timeout time.Duration
}

// NewRedis makes a sink for a redis:// or rediss:// URL; it connects on first use. Every
// call ends within timeout: dialling, reading, writing, and waiting for a pooled
// connection.
func NewRedis(url, keyPrefix string, timeout time.Duration) (*Redis, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		// The parser's message may quote the URL, password included.
		return nil, errors.New("the URL is not a valid redis:// or rediss:// URL")
	}
	if timeout <= 0 {
		timeout = DefaultRedisTimeout
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = timeout, timeout, timeout, timeout
	// The delivery's context ends a read or write in progress too (a lost lease cancels it),
	// and bounds the calls of one delivery together: a new connection's handshake, EVALSHA,
	// then EVAL after NOSCRIPT.
	opts.ContextTimeoutEnabled = true
	opts.PoolSize, opts.MaxRetries = 4, -1 // the sink's backoff retries commands, not the client
	if keyPrefix == "" {
		keyPrefix = DefaultRedisKeyPrefix
	}
	return &Redis{client: redis.NewClient(opts), prefix: keyPrefix, timeout: timeout}, nil
}

// Close closes the pool.
func (r *Redis) Close() error { return r.client.Close() }

// Check tells whether deliveries can succeed: the server answers, takes the credentials,
// and lets the user run the sink's scripts on keys under its prefix. It runs the change
// script for an account of its own with no subscribers, which reads and writes nothing.
func (r *Redis) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	key := r.prefix + ":check:check"
	err := redisChange.Run(ctx, r.client, []string{key + ":subscribers", key + ":events", key + ":account"}, "true", 0).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Permanent(classifyRedisError(err))
	}
	return nil
}

// Deliver applies the event in one script.
func (r *Redis) Deliver(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	spec := event.Spec
	key := r.accountKey(spec)
	keys := []string{key + ":subscribers", key + ":events", key + ":account"}
	var err error
	switch spec.Action {
	case v1alpha1.ActionSubscribe, v1alpha1.ActionUnsubscribe:
		args := []any{strconv.FormatBool(spec.Action == v1alpha1.ActionSubscribe), spec.EventTime}
		for _, s := range spec.Subscribers {
			args = append(args, s)
		}
		err = redisChange.Run(ctx, r.client, keys, args...).Err()
	case v1alpha1.ActionAccountDestroyed:
		err = redisDestroyed.Run(ctx, r.client, keys, spec.EventTime).Err()
	case v1alpha1.ActionSnapshot:
		snap := spec.Snapshot
		if snap == nil {
			return Permanent(errors.New("a Snapshot event without spec.snapshot"))
		}
		parts := key + ":snapshot:" + snap.ID
		args := []any{spec.EventTime, snap.Part, snap.Parts, int64(redisSnapshotPartsTTL / time.Second)}
		for _, s := range spec.Subscribers {
			args = append(args, s)
		}
		err = redisSnapshot.Run(ctx, r.client, append(keys, parts+":members", parts+":parts"), args...).Err()
	default:
		return Permanent(fmt.Errorf("action %q is not one the Redis sink applies", spec.Action))
	}
	if errors.Is(err, redis.Nil) {
		err = nil // a script that returns nothing
	}
	return classifyRedisError(err)
}

// accountKey is the start of an account's keys: {prefix}:{sdkAppID}:{account}.
func (r *Redis) accountKey(spec v1alpha1.OfficialAccountSubscriptionSpec) string {
	return r.prefix + ":" + spec.SDKAppID + ":" + spec.OfficialAccount
}

// classifyRedisError retries what time can mend: connection losses, timeouts, and the
// server's answers that say so (busy, loading, a failover, out of memory, and refused
// credentials, nearly always a password being rotated). Any other answer fails for good: a
// user without the rights (NOPERM), a key of another type, a cluster that splits an
// account's keys (CROSSSLOT, MOVED), scripting turned off.
func classifyRedisError(err error) error {
	if err == nil {
		return nil
	}
	var reply redis.Error
	if !errors.As(err, &reply) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("Redis: %w", err)
	}
	message := reply.Error()
	code, _, _ := strings.Cut(message, " ")
	switch code {
	case "WRONGPASS", "NOAUTH":
		return fmt.Errorf("Redis refused the credentials: %s", message)
	case "BUSY", "LOADING", "READONLY", "MASTERDOWN", "OOM", "TRYAGAIN", "CLUSTERDOWN":
		return fmt.Errorf("Redis: %s", message)
	}
	return Permanent(fmt.Errorf("Redis: %s", message))
}
