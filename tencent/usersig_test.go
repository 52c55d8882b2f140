package tencent

import (
	"strings"
	"testing"
	"time"

	"github.com/chat-operators/officialaccount-operator/internal/fakerest"
)

// The UserSig is checked against the algorithm's documented structure, decoded by code
// written from the description (fakerest), not by Tencent's own verifier.
func TestUserSigHasTheDocumentedStructure(t *testing.T) {
	const key, admin, app = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e", "administrator", 1400000000
	before := time.Now().Unix()
	sig, err := UserSig(app, key, admin, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(sig, "+/=") {
		t.Fatalf("the UserSig %q uses standard base64 characters, not Tencent's variant", sig)
	}
	f, err := fakerest.DecodeUserSig(sig)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != "2.0" || f.Identifier != admin || f.SDKAppID != app || f.Expire != 86400 ||
		f.Time < before || f.Time > time.Now().Unix() {
		t.Fatalf("fields %+v", f)
	}
	if f.Sig != fakerest.ExpectedSig(f, key) {
		t.Fatalf("TLS.sig %q is not the HMAC-SHA256 of the fields with the secret key", f.Sig)
	}
	if f.Sig == fakerest.ExpectedSig(f, key+"x") {
		t.Fatal("the HMAC does not depend on the key")
	}
}

func TestUserSigNeedsCredentials(t *testing.T) {
	for _, tt := range []struct{ key, admin string }{{"", "administrator"}, {"key", ""}} {
		if _, err := UserSig(1400000000, tt.key, tt.admin, time.Hour); err == nil {
			t.Errorf("UserSig(key %q, admin %q) made a signature", tt.key, tt.admin)
		}
	}
}
