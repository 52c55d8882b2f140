package webhookserver

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestTencentSignMatchesTheOfficialTestVector(t *testing.T) {
	// From Tencent's "Webhook Overview: Security Considerations" (see protocol.md).
	got := tencentSign("xxxxyyyy", "1669872112")
	want := "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
	if got != want {
		t.Fatalf("tencentSign = %s, want %s", got, want)
	}
}

func TestVerifySign(t *testing.T) {
	const token = "xxxxyyyy"
	now := time.Unix(1669872112, 0)
	valid := tencentSign(token, "1669872112")
	tests := []struct {
		name        string
		sign        string
		requestTime string
		wantErr     string
	}{
		{name: "official vector", sign: valid, requestTime: "1669872112"},
		{name: "30 s old is inside the window", sign: tencentSign(token, "1669872082"), requestTime: "1669872082"},
		{name: "missing sign", requestTime: "1669872112", wantErr: "Sign and RequestTime are required"},
		{name: "missing time", sign: valid, wantErr: "Sign and RequestTime are required"},
		{name: "time not a number", sign: valid, requestTime: "yesterday", wantErr: "not a Unix time"},
		{name: "stale", sign: tencentSign(token, "1669872000"), requestTime: "1669872000", wantErr: "from the server's clock"},
		{name: "from the future", sign: tencentSign(token, "1669872200"), requestTime: "1669872200", wantErr: "from the server's clock"},
		{name: "signed with another token", sign: tencentSign("other", "1669872112"), requestTime: "1669872112", wantErr: "does not match"},
		{name: "upper-case hex", sign: strings.ToUpper(valid), requestTime: "1669872112"},
		{name: "sign of another time", sign: valid, requestTime: "1669872111", wantErr: "does not match"},
	}
	// While a token rotates, an app has two, and a request signed with either verifies.
	rotating := []string{"the-new-token", token}
	if err := verifySign(rotating, valid, "1669872112", now, time.Minute); err != nil {
		t.Errorf("signed with the old of two tokens: %v", err)
	}
	if err := verifySign(rotating, tencentSign("the-new-token", "1669872112"), "1669872112", now, time.Minute); err != nil {
		t.Errorf("signed with the new of two tokens: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verifySign([]string{token}, tt.sign, tt.requestTime, now, time.Minute)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("verifySign: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("verifySign accepted it; want error containing %q", tt.wantErr)
			}
			if err.status != http.StatusUnauthorized || !strings.Contains(err.info, tt.wantErr) {
				t.Fatalf("verifySign = %d %q; want 401 containing %q", err.status, err.info, tt.wantErr)
			}
			if tt.sign != "" && strings.Contains(err.info, tt.sign) {
				t.Fatalf("error %q reveals the Sign", err.info)
			}
		})
	}
}
