package webhookserver

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

func seedQuery() queryParams {
	return parseQuery(url.Values{
		"SdkAppid": {"1400000000"}, "CallbackCommand": {CommandAfterAddSubscriber},
		"contenttype": {"json"}, "ClientIP": {"127.0.0.1"}, "OptPlatform": {"RESTAPI"},
	})
}

func TestParseCallbackReadsTheSeedSample(t *testing.T) {
	cb, handled, err := parseCallback(seedQuery(), testenv.Fixture("after-add-subscriber.json"))
	if err != nil || !handled {
		t.Fatalf("parseCallback = handled %v, %v", handled, err)
	}
	want := Callback{
		SDKAppID: "1400000000", Command: CommandAfterAddSubscriber, Action: v1alpha1.ActionSubscribe,
		OfficialAccount: "@TOA#_test_for_penn", OperatorAccount: "107867", Subscribers: []string{"jared", "leckie"},
		EventTime: 1670574414123, ClientIP: "127.0.0.1", OptPlatform: "RESTAPI",
	}
	if fmt.Sprint(cb) != fmt.Sprint(want) {
		t.Fatalf("got %+v\nwant %+v", cb, want)
	}
}

// A destroyed account is stored with no subscribers, whatever the body lists.
func TestParseCallbackReadsADestroyedAccount(t *testing.T) {
	q := seedQuery()
	q.CallbackCommand = CommandAfterAccountDestroyed
	cb, handled, err := parseCallback(q, testenv.Fixture("after-official-account-destroyed.json"))
	if err != nil || !handled {
		t.Fatalf("parseCallback = handled %v, %v", handled, err)
	}
	want := Callback{
		SDKAppID: "1400000000", Command: CommandAfterAccountDestroyed, Action: v1alpha1.ActionAccountDestroyed,
		OfficialAccount: "@TOA#_test_for_penn", OwnerAccount: "107867", AccountName: "penn",
		EventTime: 1670574500000, ClientIP: "127.0.0.1", OptPlatform: "RESTAPI",
	}
	if fmt.Sprint(cb) != fmt.Sprint(want) {
		t.Fatalf("got %+v\nwant %+v", cb, want)
	}
	objs := subscriptionsFor(cb, "events", metav1.Now())
	if len(objs) != 1 || objs[0].Spec.Subscribers == nil || len(objs[0].Spec.Subscribers) != 0 || objs[0].Spec.OwnerAccount != "107867" ||
		objs[0].Labels[v1alpha1.LabelAction] != string(v1alpha1.ActionAccountDestroyed) {
		t.Fatalf("stored as %+v", objs)
	}
}

func TestParseCallback(t *testing.T) {
	body := func(fields string) []byte {
		return []byte(`{"CallbackCommand":"OfficialAccount.CallbackAfterAddSubscriber",` + fields + `}`)
	}
	valid := `"Official_Account":"@TOA#_a","Operator_Account":"op","SubscribeAccountList":[{"Subscriber_Account":"u"}],"EventTime":1670574414123`
	tests := []struct {
		name        string
		query       queryParams
		body        []byte
		wantHandled bool
		wantErr     string
	}{
		{name: "valid", body: body(valid), wantHandled: true},
		{name: "the unsubscribe twin", query: queryParams{SDKAppID: "1"},
			body: []byte(strings.Replace(string(body(valid)), "AddSubscriber", "DeleteSubscriber", 1)), wantHandled: true},
		{name: "other official account command", body: testenv.Fixture("after-create-official-account.json")},
		{name: "unknown command", body: []byte(`{"CallbackCommand":"Something.Else"}`)},
		{name: "command only in the query", query: queryParams{CallbackCommand: CommandAfterAddSubscriber},
			body: []byte(`{` + valid + `}`), wantHandled: true},
		{name: "query and body disagree", query: queryParams{CallbackCommand: CommandAfterDeleteSubscriber}, body: body(valid), wantErr: "does not match"},
		{name: "not JSON", body: []byte(`<xml/>`), wantErr: "not valid JSON"},
		{name: "two JSON objects", body: []byte(`{} {}`), wantErr: "data after its JSON object"},
		{name: "sample with // comment", body: []byte(`{"EventTime": 1 // ms` + "\n}"), wantErr: "not valid JSON"},
		{name: "EventTime as a string", body: body(`"Official_Account":"a","SubscribeAccountList":[{"Subscriber_Account":"u"}],"EventTime":"1"`), wantErr: "not valid JSON"},
		{name: "no Official_Account", body: body(`"SubscribeAccountList":[{"Subscriber_Account":"u"}],"EventTime":1`), wantErr: "Official_Account is empty"},
		{name: "Official_Account of 49 bytes", body: body(`"Official_Account":"` + strings.Repeat("a", 49) + `","SubscribeAccountList":[{"Subscriber_Account":"u"}],"EventTime":1`), wantErr: "at most 48"},
		{name: "Official_Account of 48 bytes", body: body(`"Official_Account":"` + strings.Repeat("a", 48) + `","SubscribeAccountList":[{"Subscriber_Account":"u"}],"EventTime":1`), wantHandled: true},
		{name: "Official_Account with a control character", body: body(`"Official_Account":"a\tb","SubscribeAccountList":[{"Subscriber_Account":"u"}],"EventTime":1`), wantErr: "printable ASCII"},
		{name: "Operator_Account of 33 bytes", body: body(`"Official_Account":"a","Operator_Account":"` + strings.Repeat("o", 33) + `","SubscribeAccountList":[{"Subscriber_Account":"u"}],"EventTime":1`), wantErr: "Operator_Account is 33 bytes"},
		{name: "no subscribers", body: body(`"Official_Account":"a","SubscribeAccountList":[],"EventTime":1`), wantErr: "SubscribeAccountList is empty"},
		{name: "an empty subscriber", body: body(`"Official_Account":"a","SubscribeAccountList":[{"Subscriber_Account":"u"},{}],"EventTime":1`), wantErr: "SubscribeAccountList[1].Subscriber_Account is empty"},
		{name: "a UTF-8 subscriber of 32 bytes", body: body(`"Official_Account":"a","SubscribeAccountList":[{"Subscriber_Account":"` + strings.Repeat("用", 10) + `xx"}],"EventTime":1`), wantHandled: true},
		{name: "a UTF-8 subscriber of 33 bytes", body: body(`"Official_Account":"a","SubscribeAccountList":[{"Subscriber_Account":"` + strings.Repeat("用", 11) + `"}],"EventTime":1`), wantErr: "Subscriber_Account is 33 bytes"},
		{name: "no EventTime", body: body(`"Official_Account":"a","SubscribeAccountList":[{"Subscriber_Account":"u"}]`), wantErr: "EventTime is missing"},
		{name: "an IPv6 ClientIP of 45 bytes", query: queryParams{ClientIP: "0000:0000:0000:0000:0000:ffff:255.255.255.255"}, body: body(valid), wantHandled: true},
		{name: "a ClientIP of 46 bytes", query: queryParams{ClientIP: strings.Repeat("1", 46)}, body: body(valid), wantErr: "ClientIP is 46 bytes"},
		{name: "an OptPlatform of 33 bytes", query: queryParams{OptPlatform: strings.Repeat("p", 33)}, body: body(valid), wantErr: "OptPlatform is 33 bytes"},
		{name: "an account destroyed, in Tencent's shape", body: testenv.Fixture("after-official-account-destroyed.json"), wantHandled: true},
		{name: "an account destroyed without EventTime", body: []byte(`{"CallbackCommand":"` + CommandAfterAccountDestroyed + `","Official_Account":"a"}`), wantErr: "EventTime is missing"},
		{name: "an account destroyed, Owner_Account of 33 bytes", body: []byte(`{"CallbackCommand":"` + CommandAfterAccountDestroyed + `","Official_Account":"a","Owner_Account":"` + strings.Repeat("o", 33) + `","EventTime":1}`), wantErr: "Owner_Account is 33 bytes"},
		{name: "an account destroyed, Name of 1025 bytes", body: []byte(`{"CallbackCommand":"` + CommandAfterAccountDestroyed + `","Official_Account":"a","Name":"` + strings.Repeat("n", 1025) + `","EventTime":1}`), wantErr: "Name is 1025 bytes"},
		{name: "EventTime beyond int32", body: body(`"Official_Account":"a","SubscribeAccountList":[{"Subscriber_Account":"u"}],"EventTime":9007199254740993`), wantHandled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, handled, err := parseCallback(tt.query, tt.body)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if handled != tt.wantHandled {
				t.Fatalf("handled = %v, want %v", handled, tt.wantHandled)
			}
		})
	}
}

func TestEventName(t *testing.T) {
	base := Callback{SDKAppID: "1400000000", Command: CommandAfterAddSubscriber, OfficialAccount: "@TOA#_a",
		OperatorAccount: "op", Subscribers: []string{"b", "a"}, EventTime: 1670574414123, ClientIP: "1.2.3.4"}
	name := eventName(base)
	if len(name) > 63 || !strings.HasPrefix(name, "oasub-") {
		t.Fatalf("name %q is no valid, recognisable resource name", name)
	}
	same := []func(*Callback){
		func(c *Callback) { c.Subscribers = []string{"a", "b"} },      // order does not matter
		func(c *Callback) { c.Subscribers = []string{"a", "b", "a"} }, // a set
		func(c *Callback) { c.ClientIP = "5.6.7.8" },                  // not part of the event
		func(c *Callback) { c.OptPlatform = "Web" },
	}
	for i, change := range same {
		c := base
		change(&c)
		if got := eventName(c); got != name {
			t.Errorf("same-event change %d gave another name: %s", i, got)
		}
	}
	different := map[string]func(*Callback){
		"app":        func(c *Callback) { c.SDKAppID = "1400000001" },
		"command":    func(c *Callback) { c.Command = CommandAfterDeleteSubscriber },
		"account":    func(c *Callback) { c.OfficialAccount = "@TOA#_b" },
		"operator":   func(c *Callback) { c.OperatorAccount = "op2" },
		"time":       func(c *Callback) { c.EventTime++ },
		"subscriber": func(c *Callback) { c.Subscribers = []string{"a", "c"} },
		// Field boundaries count: "ab"+"c" is not "a"+"bc".
		"boundaries": func(c *Callback) { c.OfficialAccount, c.OperatorAccount = "@TOA#_ao", "p" },
	}
	for what, change := range different {
		c := base
		c.Subscribers = slices.Clone(base.Subscribers)
		change(&c)
		if got := eventName(c); got == name {
			t.Errorf("changing the %s kept the name %s", what, got)
		}
	}
}

func TestSubscriptionsForSplitsLargeEvents(t *testing.T) {
	tests := []struct {
		subscribers int
		wantSizes   []int
	}{
		{subscribers: 1, wantSizes: []int{1}},
		{subscribers: 500, wantSizes: []int{500}},
		{subscribers: 501, wantSizes: []int{500, 1}},
		{subscribers: 1500, wantSizes: []int{500, 500, 500}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.subscribers), func(t *testing.T) {
			cb := Callback{SDKAppID: "1", Command: CommandAfterAddSubscriber, Action: v1alpha1.ActionSubscribe,
				OfficialAccount: "@TOA#_a", EventTime: 1}
			for i := range tt.subscribers {
				cb.Subscribers = append(cb.Subscribers, fmt.Sprint(i))
			}
			objs := subscriptionsFor(cb, "ns", metav1.Now())
			var all []string
			names := map[string]bool{}
			for i, o := range objs {
				if len(o.Spec.Subscribers) != tt.wantSizes[i] || int(o.Spec.SubscriberCount) != tt.wantSizes[i] {
					t.Fatalf("part %d has %d subscribers (count %d), want %d", i, len(o.Spec.Subscribers), o.Spec.SubscriberCount, tt.wantSizes[i])
				}
				if o.Labels[v1alpha1.LabelOfficialAccountHash] != v1alpha1.OfficialAccountHash("@TOA#_a") || len(o.Labels[v1alpha1.LabelOfficialAccountHash]) != 32 {
					t.Fatalf("part %d has label %q", i, o.Labels[v1alpha1.LabelOfficialAccountHash])
				}
				names[o.Name] = true
				all = append(all, o.Spec.Subscribers...)
			}
			if len(objs) != len(tt.wantSizes) || len(names) != len(objs) {
				t.Fatalf("got %d resources with %d distinct names, want %d", len(objs), len(names), len(tt.wantSizes))
			}
			if !slices.Equal(all, cb.Subscribers) {
				t.Fatal("the parts do not add up to the event's subscribers in order")
			}
		})
	}
}
