// Package tencent calls Tencent Cloud Chat's REST API: the UserSig that authenticates a
// call, and the Official Account commands the resync needs.
package tencent

import (
	"fmt"
	"time"

	"github.com/tencentyun/tls-sig-api-v2-golang/tencentyun"
)

// UserSig makes the TLSSigAPIv2 signature of identifier (the app's admin account) valid
// for ttl, with Tencent's own MIT-licensed implementation.
func UserSig(sdkAppID uint64, secretKey, identifier string, ttl time.Duration) (string, error) {
	if secretKey == "" || identifier == "" {
		return "", fmt.Errorf("a UserSig needs the app's secret key and its admin identifier")
	}
	return tencentyun.GenUserSig(int(sdkAppID), secretKey, identifier, int(ttl.Seconds()))
}
