package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
)

// OfficialAccountHash is the value of LabelOfficialAccountHash for an Official Account ID,
// which is no valid label value itself: the first 32 hex digits of its SHA-256, so that
// `printf %s "$ID" | sha256sum | cut -c1-32` finds it. The webhook labels the events it
// stores with it, and the resync and a user select them by it.
func OfficialAccountHash(officialAccount string) string {
	sum := sha256.Sum256([]byte(officialAccount))
	return hex.EncodeToString(sum[:])[:32]
}
