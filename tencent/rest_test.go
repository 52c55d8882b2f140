package tencent

import "testing"

// How the resync treats each of Tencent's documented error codes.
func TestErrorClassification(t *testing.T) {
	tests := []struct {
		code               int
		retryable, refused bool
	}{
		{60007, true, false}, {60011, true, false}, {60018, true, false}, {60019, true, false}, // frequency
		{10004, true, false}, {20005, true, false}, // internal
		{60006, false, true}, {60010, false, true}, {131000, false, true}, // app, admin, service
		{70003, false, true}, {70009, false, true}, {70013, false, true}, {70014, false, true}, // UserSig
		{70001, false, false},  // expired: signed anew
		{130004, false, false}, // one account gone
		{6017, false, false},   // bad parameter
	}
	for _, tt := range tests {
		e := &Error{Code: tt.code}
		if e.Retryable() != tt.retryable || e.Refused() != tt.refused {
			t.Errorf("%d: retryable %v, refused %v; want %v, %v", tt.code, e.Retryable(), e.Refused(), tt.retryable, tt.refused)
		}
	}
}
