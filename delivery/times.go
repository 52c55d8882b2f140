package delivery

import (
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

// StatusTime rounds to the second as the API server stores times, so that a status
// computed here compares equal to the one read back.
func StatusTime(t time.Time) metav1.Time { return metav1.NewTime(t.Truncate(time.Second)) }

// metav1Later rounds up to the second, so that a stored next-attempt time is never earlier
// than the backoff asked for.
func metav1Later(t time.Time) metav1.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return metav1.NewTime(r.Add(time.Second))
	}
	return metav1.NewTime(t)
}
