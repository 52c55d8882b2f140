package controllers

import (
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
