package controllers

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/delivery"
)

// WriteUnwrittenOutcomes writes every outcome the reconciles could not, reading each
// object past the cache. It is called once the reconcilers have stopped (a shutdown, a
// lost lease), with a context of its own: the next leader then finds the deliveries done
// instead of making them again.
func (r *SubscriptionReconciler) WriteUnwrittenOutcomes(ctx context.Context) error {
	var errs []error
	keys := r.Ledger.Unwritten()
	if len(keys) > 0 {
		logf.FromContext(ctx).Info("writing the delivery outcomes whose status write failed", "events", len(keys))
	}
	for _, key := range keys {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error { return r.writeOutcomesOf(ctx, key) })
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}

func (r *SubscriptionReconciler) writeOutcomesOf(ctx context.Context, key types.NamespacedName) error {
	var sub v1alpha1.OfficialAccountSubscription
	if err := r.APIReader.Get(ctx, key, &sub); err != nil {
		if apierrors.IsNotFound(err) {
			r.Ledger.Forget(key)
			return nil
		}
		return err
	}
	if r.Ledger.Observe(&sub) != delivery.Fresh {
		return nil
	}
	// The plan of a term that has ended writes what the sinks answered and starts nothing;
	// whoever leads next delivers the rest.
	in, err := r.planInput(ctx, &sub, true)
	if err != nil {
		return err
	}
	p := delivery.Make(in)
	if p.Delete {
		return r.deleteEvent(ctx, &sub)
	}
	if !p.Write {
		return nil
	}
	sub.Status = p.Status
	return r.writeStatus(ctx, &sub)
}
