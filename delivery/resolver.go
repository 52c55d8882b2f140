package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/credentials"
	"github.com/chat-operators/officialaccount-operator/sinks"
)

// configError is a SubscriptionSink that cannot be delivered to as it stands: a missing
// Secret, a malformed key. Its reason becomes the sink's Ready condition reason.
type configError = credentials.Error

// Resolver turns a SubscriptionSink into a ready-to-use sinks.Sink: it reads the Secrets
// the sink names and reuses the built sink until the configuration changes.
type Resolver struct {
	Cache client.Reader
	// APIReader reads past the cache, which holds only the Secrets labelled for sinks, to
	// tell a Secret that lacks the label from one that does not exist.
	APIReader client.Reader
	Registry  *sinks.Registry
}

// SinkKey names a sink in the registry, the lanes and the activity: namespace/name.
func SinkKey(sink *v1alpha1.SubscriptionSink) string {
	return types.NamespacedName{Namespace: sink.Namespace, Name: sink.Name}.String()
}

// Resolve returns the built sink for the SubscriptionSink as it is now.
func (r *Resolver) Resolve(ctx context.Context, sink *v1alpha1.SubscriptionSink) (sinks.Sink, error) {
	switch {
	case sink.Spec.HTTP != nil:
		return r.resolveHTTP(ctx, sink)
	case sink.Spec.Postgres != nil:
		return r.resolvePostgres(ctx, sink)
	case sink.Spec.MySQL != nil:
		return r.resolveMySQL(ctx, sink)
	case sink.Spec.NATS != nil:
		return r.resolveNATS(ctx, sink)
	case sink.Spec.Kafka != nil:
		return r.resolveKafka(ctx, sink)
	case sink.Spec.Redis != nil:
		return r.resolveRedis(ctx, sink)
	default:
		return nil, &configError{Reason: v1alpha1.ReasonInvalidConfig, Err: errors.New("the sink names no destination")}
	}
}

func (r *Resolver) resolveHTTP(ctx context.Context, sink *v1alpha1.SubscriptionSink) (sinks.Sink, error) {
	dest := sink.Spec.HTTP
	var signingKey []byte
	fingerprint := fmt.Sprintf("%s/%d", sink.UID, sink.Generation)
	if ref := dest.SigningSecretRef; ref != nil {
		value, version, err := r.secretValue(ctx, sink.Namespace, ref)
		if err != nil {
			return nil, err
		}
		if signingKey, err = sinks.ParseSigningSecret(value); err != nil {
			return nil, &configError{Reason: v1alpha1.ReasonInvalidSecret,
				Err: fmt.Errorf("key %q of Secret %q: %w", ref.Key, ref.Name, err)}
		}
		fingerprint += "/" + version
	}
	return r.Registry.Get(ctx, SinkKey(sink), fingerprint, func() (sinks.Sink, error) {
		s, err := sinks.NewHTTP(dest, signingKey)
		if err != nil {
			return nil, &configError{Reason: v1alpha1.ReasonInvalidConfig, Err: err}
		}
		return s, nil
	})
}

func (r *Resolver) resolvePostgres(ctx context.Context, sink *v1alpha1.SubscriptionSink) (sinks.Sink, error) {
	dest := sink.Spec.Postgres
	return r.resolveFromSecretValue(ctx, sink, &dest.DSNSecretRef, func(dsn string) (sinks.Sink, error) {
		return sinks.NewPostgres(dsn, dest.Table, dest.CreateTable == nil || *dest.CreateTable, durationOf(dest.Timeout))
	})
}

func (r *Resolver) resolveMySQL(ctx context.Context, sink *v1alpha1.SubscriptionSink) (sinks.Sink, error) {
	dest := sink.Spec.MySQL
	return r.resolveFromSecretValue(ctx, sink, &dest.DSNSecretRef, func(dsn string) (sinks.Sink, error) {
		return sinks.NewMySQL(dsn, dest.Table, dest.CreateTable == nil || *dest.CreateTable, durationOf(dest.Timeout))
	})
}

func (r *Resolver) resolveNATS(ctx context.Context, sink *v1alpha1.SubscriptionSink) (sinks.Sink, error) {
	dest := sink.Spec.NATS
	var creds sinks.NATSCredentials
	fingerprint := fmt.Sprintf("%s/%d", sink.UID, sink.Generation)
	if ref := dest.CredentialsSecretRef; ref != nil {
		secret, err := r.secret(ctx, sink.Namespace, ref.Name)
		if err != nil {
			return nil, err
		}
		creds = sinks.NATSCredentials{User: string(secret.Data["user"]), Password: string(secret.Data["password"]),
			Token: string(secret.Data["token"]), Creds: secret.Data["creds"]}
		if creds.User == "" && creds.Token == "" && len(creds.Creds) == 0 {
			return nil, &configError{Reason: v1alpha1.ReasonInvalidSecret,
				Err: fmt.Errorf(`Secret %q has none of the keys "user" and "password", "token" or "creds"`, ref.Name)}
		}
		fingerprint += "/" + secret.ResourceVersion
	}
	useJetStream := dest.JetStream == nil || *dest.JetStream
	return r.Registry.Get(ctx, SinkKey(sink), fingerprint, func() (sinks.Sink, error) {
		s, err := sinks.NewNATS(dest.URL, creds, dest.Subject, useJetStream, dest.CreateStream)
		if err != nil {
			return nil, &configError{Reason: v1alpha1.ReasonInvalidConfig, Err: err}
		}
		return s, nil
	})
}

func (r *Resolver) resolveKafka(ctx context.Context, sink *v1alpha1.SubscriptionSink) (sinks.Sink, error) {
	dest := sink.Spec.Kafka
	cfg := sinks.KafkaConfig{Brokers: dest.Brokers, Topic: dest.Topic, Format: dest.Format, TLS: dest.TLS != nil,
		Timeout: durationOf(dest.Timeout)}
	if dest.TLS != nil {
		cfg.CABundle = dest.TLS.CABundle
	}
	fingerprint := fmt.Sprintf("%s/%d", sink.UID, sink.Generation)
	if sasl := dest.SASL; sasl != nil {
		secret, err := r.secret(ctx, sink.Namespace, sasl.CredentialsSecretRef.Name)
		if err != nil {
			return nil, err
		}
		cfg.SASL = sinks.KafkaSASL{Mechanism: sasl.Mechanism, Username: string(secret.Data["username"]),
			Password: string(secret.Data["password"])}
		if cfg.SASL.Username == "" || cfg.SASL.Password == "" {
			return nil, &configError{Reason: v1alpha1.ReasonInvalidSecret,
				Err: fmt.Errorf(`Secret %q lacks the key "username" or "password"`, sasl.CredentialsSecretRef.Name)}
		}
		fingerprint += "/" + secret.ResourceVersion
	}
	return r.Registry.Get(ctx, SinkKey(sink), fingerprint, func() (sinks.Sink, error) {
		s, err := sinks.NewKafka(cfg)
		if err != nil {
			return nil, &configError{Reason: v1alpha1.ReasonInvalidConfig, Err: err}
		}
		return s, nil
	})
}

func (r *Resolver) resolveRedis(ctx context.Context, sink *v1alpha1.SubscriptionSink) (sinks.Sink, error) {
	dest := sink.Spec.Redis
	return r.resolveFromSecretValue(ctx, sink, &dest.URLSecretRef, func(url string) (sinks.Sink, error) {
		return sinks.NewRedis(url, dest.KeyPrefix, durationOf(dest.Timeout))
	})
}

// resolveFromSecretValue builds a sink from one key of a Secret (a DSN, a URL), again when
// the Secret changes. A value the sink cannot use makes the sink's reason InvalidSecret.
func (r *Resolver) resolveFromSecretValue(ctx context.Context, sink *v1alpha1.SubscriptionSink, ref *corev1.SecretKeySelector,
	build func(value string) (sinks.Sink, error)) (sinks.Sink, error) {
	value, version, err := r.secretValue(ctx, sink.Namespace, ref)
	if err != nil {
		return nil, err
	}
	fingerprint := fmt.Sprintf("%s/%d/%s", sink.UID, sink.Generation, version)
	return r.Registry.Get(ctx, SinkKey(sink), fingerprint, func() (sinks.Sink, error) {
		s, err := build(strings.TrimSpace(value))
		if err != nil {
			return nil, &configError{Reason: v1alpha1.ReasonInvalidSecret,
				Err: fmt.Errorf("key %q of Secret %q: %w", ref.Key, ref.Name, err)}
		}
		return s, nil
	})
}

// durationOf is d's duration, or 0 (the sink's default) when unset.
func durationOf(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}

func (r *Resolver) secretValue(ctx context.Context, namespace string, ref *corev1.SecretKeySelector) (string, string, error) {
	return r.credentials().Value(ctx, namespace, ref)
}

func (r *Resolver) secret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	return r.credentials().Secret(ctx, namespace, name)
}

func (r *Resolver) credentials() credentials.Reader {
	return credentials.Reader{Cache: r.Cache, API: r.APIReader}
}

// SecretNames lists the Secrets a sink names, for the index that maps a changed Secret to
// its sinks.
func SecretNames(sink *v1alpha1.SubscriptionSink) []string {
	var names []string
	if sink.Spec.HTTP != nil && sink.Spec.HTTP.SigningSecretRef != nil {
		names = append(names, sink.Spec.HTTP.SigningSecretRef.Name)
	}
	if sink.Spec.Postgres != nil {
		names = append(names, sink.Spec.Postgres.DSNSecretRef.Name)
	}
	if sink.Spec.MySQL != nil {
		names = append(names, sink.Spec.MySQL.DSNSecretRef.Name)
	}
	if sink.Spec.NATS != nil && sink.Spec.NATS.CredentialsSecretRef != nil {
		names = append(names, sink.Spec.NATS.CredentialsSecretRef.Name)
	}
	if sink.Spec.Kafka != nil && sink.Spec.Kafka.SASL != nil {
		names = append(names, sink.Spec.Kafka.SASL.CredentialsSecretRef.Name)
	}
	if sink.Spec.Redis != nil {
		names = append(names, sink.Spec.Redis.URLSecretRef.Name)
	}
	return names
}
