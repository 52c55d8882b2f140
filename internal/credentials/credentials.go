// Package credentials reads the Secrets that sinks and resyncs name. The operator's cache
// holds only the Secrets labelled officialaccount.chat-operators.dev/sink-credentials=true:
// it has no business with the others and never reads their data.
package credentials

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// Error is a configuration that cannot work as it stands: a missing Secret, one without
// the label, a missing or malformed key. Its Reason becomes the Ready condition's reason.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Reader reads labelled Secrets from the cache.
type Reader struct {
	Cache client.Reader
	// API reads past the cache, to tell a Secret that lacks the label from one that does
	// not exist; of an unlabelled one only the metadata is read.
	API client.Reader
}

// Secret reads a labelled Secret. A missing one, or one without the label, is an *Error.
func (r Reader) Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	var secret corev1.Secret
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := r.Cache.Get(ctx, key, &secret)
	if apierrors.IsNotFound(err) {
		unlabelled := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}}
		if getErr := r.API.Get(ctx, key, unlabelled); getErr == nil {
			return nil, &Error{Reason: v1alpha1.ReasonSecretNotAllowed,
				Err: fmt.Errorf("Secret %q lacks the label %s=true that lets the operator read it; add it with "+
					"`kubectl label secret -n %s %s %s=true`", name, v1alpha1.LabelSinkCredentials, namespace, name, v1alpha1.LabelSinkCredentials)}
		}
		return nil, &Error{Reason: v1alpha1.ReasonSecretNotFound,
			Err: fmt.Errorf("Secret %q does not exist in namespace %q", name, namespace)}
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %q: %w", name, err)
	}
	return &secret, nil
}

// Value reads one key of a labelled Secret, and the Secret's resourceVersion, so that a
// changed Secret can rebuild what was made from it.
func (r Reader) Value(ctx context.Context, namespace string, ref *corev1.SecretKeySelector) (value, version string, err error) {
	secret, err := r.Secret(ctx, namespace, ref.Name)
	if err != nil {
		return "", "", err
	}
	raw, ok := secret.Data[ref.Key]
	if !ok {
		return "", "", &Error{Reason: v1alpha1.ReasonSecretNotFound, Err: fmt.Errorf("Secret %q has no key %q", ref.Name, ref.Key)}
	}
	return string(raw), secret.ResourceVersion, nil
}
