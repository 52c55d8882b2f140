package sinks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

const standardWebhooksSecretPrefix = "whsec_"

// ParseSigningSecret decodes a Standard Webhooks secret ("whsec_" + base64 key).
func ParseSigningSecret(secret string) ([]byte, error) {
	encoded, ok := strings.CutPrefix(strings.TrimSpace(secret), standardWebhooksSecretPrefix)
	if !ok {
		return nil, errors.New(`signing secret must start with "whsec_" followed by a base64 key`)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, errors.New(`signing secret after "whsec_" is not valid base64`)
	}
	if len(key) < 16 {
		return nil, errors.New("signing secret key is shorter than 16 bytes")
	}
	return key, nil
}

// standardWebhooksSignature signs a message as the Standard Webhooks specification says:
// "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)).
func standardWebhooksSignature(key []byte, id string, timestamp time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(timestamp.Unix(), 10) + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
