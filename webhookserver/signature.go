package webhookserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// tencentSign is Tencent's webhook signature: lower-case hex SHA-256 of the token followed
// by the decimal RequestTime (plain SHA-256, not HMAC).
func tencentSign(token, requestTime string) string {
	sum := sha256.Sum256([]byte(token + requestTime))
	return hex.EncodeToString(sum[:])
}

func unauthorized(info string) *requestError {
	return &requestError{status: http.StatusUnauthorized, result: "unauthorized", info: info}
}

// verifySign checks Sign and RequestTime against the app's tokens, any of which may have
// signed. The scheme signs only the token and the time, so a captured Sign is valid for
// any body within the window: the window is what limits replay. The errors never include
// the Sign itself.
func verifySign(tokens []string, sign, requestTime string, now time.Time, maxSkew time.Duration) *requestError {
	if sign == "" || requestTime == "" {
		return unauthorized("Sign and RequestTime are required: webhook authentication is configured for this SdkAppid")
	}
	seconds, err := strconv.ParseInt(requestTime, 10, 64)
	if err != nil {
		return unauthorized("RequestTime is not a Unix time in seconds")
	}
	skew := now.Sub(time.Unix(seconds, 0))
	if skew < -maxSkew || skew > maxSkew {
		return unauthorized("RequestTime is more than " + maxSkew.String() + " from the server's clock")
	}
	// Hex is case-insensitive; lower-casing the caller's input reveals nothing secret.
	got := []byte(strings.ToLower(sign))
	for _, token := range tokens {
		if subtle.ConstantTimeCompare([]byte(tencentSign(token, requestTime)), got) == 1 {
			return nil
		}
	}
	return unauthorized("Sign does not match the configured token")
}
