package fakerest

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// UserSigFields are the fields a TLSSigAPIv2 UserSig carries, as Tencent documents them.
type UserSigFields struct {
	Version    string `json:"TLS.ver"`
	Identifier string `json:"TLS.identifier"`
	SDKAppID   uint64 `json:"TLS.sdkappid"`
	Expire     int64  `json:"TLS.expire"`
	Time       int64  `json:"TLS.time"`
	Sig        string `json:"TLS.sig"`
}

// tencentBase64 is Tencent's variant of base64: '*' for '+', '-' for '/', '_' for '='.
var fromTencentBase64 = strings.NewReplacer("*", "+", "-", "/", "_", "=")

// DecodeUserSig undoes a UserSig's encoding, written from the algorithm's description
// (not from Tencent's code): base64 variant, then zlib, then JSON.
func DecodeUserSig(userSig string) (UserSigFields, error) {
	var f UserSigFields
	compressed, err := base64.StdEncoding.DecodeString(fromTencentBase64.Replace(userSig))
	if err != nil {
		return f, fmt.Errorf("not Tencent's base64: %w", err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return f, fmt.Errorf("not zlib: %w", err)
	}
	doc, err := io.ReadAll(zr)
	if err != nil {
		return f, fmt.Errorf("not zlib: %w", err)
	}
	if err := json.Unmarshal(doc, &f); err != nil {
		return f, fmt.Errorf("not the UserSig JSON: %w", err)
	}
	return f, nil
}

// ExpectedSig is the HMAC-SHA256 of the fields' fixed content string, in standard base64.
func ExpectedSig(f UserSigFields, secretKey string) string {
	content := "TLS.identifier:" + f.Identifier + "\n" +
		"TLS.sdkappid:" + strconv.FormatUint(f.SDKAppID, 10) + "\n" +
		"TLS.time:" + strconv.FormatInt(f.Time, 10) + "\n" +
		"TLS.expire:" + strconv.FormatInt(f.Expire, 10) + "\n"
	mac := hmac.New(sha256.New, []byte(secretKey))
	mac.Write([]byte(content))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// verifyUserSig answers the error code Tencent gives for a UserSig, 0 when it is valid.
func verifyUserSig(userSig string, sdkAppID uint64, identifier, secretKey string, now time.Time) (int, string) {
	f, err := DecodeUserSig(userSig)
	switch {
	case err != nil:
		return 70003, "UserSig is invalid: " + err.Error()
	case f.Version != "2.0":
		return 70003, "UserSig is not version 2.0"
	case f.Identifier != identifier:
		return 70013, "the identifier in the UserSig is not the identifier of the request"
	case f.SDKAppID != sdkAppID:
		return 70014, "the SDKAppID in the UserSig is not the SDKAppID of the request"
	case !hmac.Equal([]byte(f.Sig), []byte(ExpectedSig(f, secretKey))):
		return 70009, "UserSig verification failed"
	case now.Unix() > f.Time+f.Expire:
		return 70001, "UserSig expired"
	}
	return 0, ""
}
