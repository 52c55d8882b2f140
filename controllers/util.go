package controllers

import (
	"context"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// maxErrorLength keeps an error in status readable and the object small.
const maxErrorLength = 1024

func truncate(s string) string {
	if len(s) <= maxErrorLength {
		return s
	}
	return s[:maxErrorLength-3] + "..."
}

// metav1Now rounds to the second as the API server stores times, so that a status
// computed here compares equal to the one read back.
func metav1Now(t time.Time) metav1.Time { return metav1.NewTime(t.Truncate(time.Second)) }

// metav1Later rounds up to the second, so that a stored next-attempt time is never earlier
// than the backoff asked for.
func metav1Later(t time.Time) metav1.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return metav1.NewTime(r.Add(time.Second))
	}
	return metav1.NewTime(t)
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

// requestsFromIndex lists the objects in obj's namespace whose field index holds obj's
// name, as reconcile requests: how a watch on one kind wakes the objects of another.
func requestsFromIndex(ctx context.Context, c client.Client, list client.ObjectList, obj client.Object, index string) []reconcile.Request {
	if err := c.List(ctx, list, client.InNamespace(obj.GetNamespace()), client.MatchingFields{index: obj.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "listing by index", "index", index, "name", obj.GetName())
		return nil
	}
	var reqs []reconcile.Request
	_ = meta.EachListItem(list, func(item runtime.Object) error {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(item.(client.Object))})
		return nil
	})
	return reqs
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
