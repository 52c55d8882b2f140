package webhookserver

import (
	"net/http"
	"testing"

	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// FuzzParseCallback: whatever arrives, the parser returns a stored-worthy callback that
// meets Tencent's limits, an ignored command, or a 400 — never a panic.
func FuzzParseCallback(f *testing.F) {
	for _, name := range []string{"after-add-subscriber.json", "after-delete-subscriber.json", "after-create-official-account.json"} {
		f.Add(CommandAfterAddSubscriber, testenv.Fixture(name))
	}
	f.Add("", []byte(`{"CallbackCommand":"OfficialAccount.CallbackAfterAddSubscriber","SubscribeAccountList":[{}]}`))
	f.Add(CommandAfterDeleteSubscriber, []byte(`[]`))
	f.Fuzz(func(t *testing.T, command string, body []byte) {
		cb, handled, err := parseCallback(queryParams{SDKAppID: "1", CallbackCommand: command}, body)
		if err != nil {
			if rerr, ok := err.(*requestError); !ok || rerr.status != http.StatusBadRequest || rerr.info == "" {
				t.Fatalf("error %v is not a 400 with a reason", err)
			}
			return
		}
		if !handled {
			return
		}
		if cb.OfficialAccount == "" || len(cb.OfficialAccount) > maxOfficialAccountBytes || len(cb.Subscribers) == 0 || cb.EventTime <= 0 {
			t.Fatalf("accepted an invalid callback: %+v", cb)
		}
		for _, s := range cb.Subscribers {
			if s == "" || len(s) > maxUserIDBytes {
				t.Fatalf("accepted subscriber %q", s)
			}
		}
		if objs := subscriptionsFor(cb, "ns", nowForTest()); len(objs) == 0 {
			t.Fatal("a handled callback maps to no resource")
		}
	})
}
