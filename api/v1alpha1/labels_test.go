package v1alpha1

import "testing"

// TestOfficialAccountHash checks the label's value against what the documented shell
// pipeline prints: `printf %s "$ID" | sha256sum | cut -c1-32`.
func TestOfficialAccountHash(t *testing.T) {
	tests := []struct{ account, want string }{
		{account: "@TOA#_a", want: "f1d63c03032a3ce760e2b14d12e2407f"},
		{account: "@TOA#_bench", want: "d768b373c42ba390d6416b64b5f1f5b5"},
		{account: "", want: "e3b0c44298fc1c149afbf4c8996fb924"},
	}
	for _, tt := range tests {
		if got := OfficialAccountHash(tt.account); got != tt.want {
			t.Errorf("OfficialAccountHash(%q) = %q, want %q", tt.account, got, tt.want)
		}
	}
}
