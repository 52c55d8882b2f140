package webhookserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// The Official Account callbacks this operator stores; every other command is acknowledged
// and ignored (Tencent's console also sends URL checks with commands nobody handles).
const (
	CommandAfterAddSubscriber    = "OfficialAccount.CallbackAfterAddSubscriber"
	CommandAfterDeleteSubscriber = "OfficialAccount.CallbackAfterDeleteSubscriber"
	// CommandAfterAccountDestroyed ends every subscription to the account. Whether Tencent
	// also sends an unsubscribe per member is not documented; if it does, those repeat it.
	CommandAfterAccountDestroyed = "OfficialAccount.CallbackAfterOfficialAccountDestroyed"
)

// Tencent's documented limits on IDs (protocol.md, "Identifiers"), and bounds on the query
// strings Tencent sends, which it documents no limit for: the longest IP address in text
// (IPv6 with an embedded IPv4 address), and a platform name well beyond Tencent's longest.
// The CRD holds the same limits (api/v1alpha1), so that a stored event never exceeds them.
const (
	maxOfficialAccountBytes = 48
	maxUserIDBytes          = 32
	maxClientIPBytes        = 45
	maxOptPlatformBytes     = 32
	// Tencent documents no limit on an account's Name; this is far beyond any display name.
	maxAccountNameBytes = 1024
)

// actionFor returns the action a command stores, or false for commands that are only
// acknowledged.
func actionFor(command string) (v1alpha1.Action, bool) {
	switch command {
	case CommandAfterAddSubscriber:
		return v1alpha1.ActionSubscribe, true
	case CommandAfterDeleteSubscriber:
		return v1alpha1.ActionUnsubscribe, true
	case CommandAfterAccountDestroyed:
		return v1alpha1.ActionAccountDestroyed, true
	}
	return "", false
}

// queryParams are the parameters Tencent appends to the webhook URL.
type queryParams struct {
	SDKAppID        string
	CallbackCommand string
	ClientIP        string
	OptPlatform     string
	Sign            string
	RequestTime     string
}

func parseQuery(q url.Values) queryParams {
	sdkAppID := q.Get("SdkAppid")
	if sdkAppID == "" {
		// A newer product page spells it SdkAppId.
		sdkAppID = q.Get("SdkAppId")
	}
	return queryParams{
		SDKAppID:        sdkAppID,
		CallbackCommand: q.Get("CallbackCommand"),
		ClientIP:        q.Get("ClientIP"),
		OptPlatform:     q.Get("OptPlatform"),
		Sign:            q.Get("Sign"),
		RequestTime:     q.Get("RequestTime"),
	}
}

// callbackBody is the JSON body of the callbacks stored. The subscriber callbacks use the
// same field names; the destroyed callback has Owner_Account and Name instead of
// Operator_Account and SubscribeAccountList. Other commands are only read as far as
// CallbackCommand.
type callbackBody struct {
	CallbackCommand      string `json:"CallbackCommand"`
	OfficialAccount      string `json:"Official_Account"`
	OperatorAccount      string `json:"Operator_Account"`
	OwnerAccount         string `json:"Owner_Account"`
	Name                 string `json:"Name"`
	SubscribeAccountList []struct {
		SubscriberAccount string `json:"Subscriber_Account"`
	} `json:"SubscribeAccountList"`
	EventTime *int64 `json:"EventTime"`
}

// Callback is a validated subscriber callback, ready to be stored.
type Callback struct {
	SDKAppID        string
	Command         string
	Action          v1alpha1.Action
	OfficialAccount string
	OperatorAccount string
	OwnerAccount    string // AccountDestroyed only
	AccountName     string // AccountDestroyed only
	Subscribers     []string
	EventTime       int64
	ClientIP        string
	OptPlatform     string
}

// requestError is a rejected request: the HTTP status and the ErrorInfo Tencent's console
// shows, which must tell the app's developers what to fix.
type requestError struct {
	status int
	result string // metric label
	info   string
}

func (e *requestError) Error() string { return e.info }

func badRequest(format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, result: "bad_request", info: fmt.Sprintf(format, args...)}
}

// parseCallback reads the command of any callback and, for the subscriber callbacks, the
// whole event. It returns ok=false for commands that are acknowledged without storing.
func parseCallback(q queryParams, body []byte) (cb Callback, ok bool, err error) {
	var b callbackBody
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&b); err != nil {
		return Callback{}, false, badRequest("body is not valid JSON: %v", err)
	}
	if dec.More() {
		return Callback{}, false, badRequest("body has data after its JSON object")
	}
	command := b.CallbackCommand
	if command == "" {
		command = q.CallbackCommand
	}
	if q.CallbackCommand != "" && b.CallbackCommand != "" && q.CallbackCommand != b.CallbackCommand {
		return Callback{}, false, badRequest("CallbackCommand %q in the query does not match %q in the body", q.CallbackCommand, b.CallbackCommand)
	}
	action, handled := actionFor(command)
	if !handled {
		return Callback{}, false, nil
	}
	cb = Callback{
		SDKAppID:        q.SDKAppID,
		Command:         command,
		Action:          action,
		OfficialAccount: b.OfficialAccount,
		OperatorAccount: b.OperatorAccount,
		ClientIP:        q.ClientIP,
		OptPlatform:     q.OptPlatform,
	}
	if action == v1alpha1.ActionAccountDestroyed {
		cb.OwnerAccount, cb.AccountName = b.OwnerAccount, b.Name
	} else {
		for _, s := range b.SubscribeAccountList {
			cb.Subscribers = append(cb.Subscribers, s.SubscriberAccount)
		}
	}
	if b.EventTime != nil {
		cb.EventTime = *b.EventTime
	}
	if err := validateCallback(cb, b.EventTime != nil); err != nil {
		return Callback{}, false, err
	}
	return cb, true, nil
}

func validateCallback(cb Callback, hasEventTime bool) *requestError {
	switch {
	case cb.OfficialAccount == "":
		return badRequest("Official_Account is empty")
	case len(cb.OfficialAccount) > maxOfficialAccountBytes:
		return badRequest("Official_Account is %d bytes; Tencent allows at most %d", len(cb.OfficialAccount), maxOfficialAccountBytes)
	case !isPrintableASCII(cb.OfficialAccount):
		return badRequest("Official_Account has characters outside printable ASCII")
	case len(cb.OperatorAccount) > maxUserIDBytes:
		return badRequest("Operator_Account is %d bytes; Tencent allows at most %d", len(cb.OperatorAccount), maxUserIDBytes)
	case len(cb.OwnerAccount) > maxUserIDBytes:
		return badRequest("Owner_Account is %d bytes; Tencent allows at most %d", len(cb.OwnerAccount), maxUserIDBytes)
	case len(cb.AccountName) > maxAccountNameBytes:
		return badRequest("Name is %d bytes; at most %d are accepted", len(cb.AccountName), maxAccountNameBytes)
	case len(cb.Subscribers) == 0 && cb.Action != v1alpha1.ActionAccountDestroyed:
		return badRequest("SubscribeAccountList is empty")
	case !hasEventTime || cb.EventTime <= 0:
		return badRequest("EventTime is missing or not a positive Unix time in milliseconds")
	case len(cb.ClientIP) > maxClientIPBytes:
		return badRequest("ClientIP is %d bytes; an IP address has at most %d", len(cb.ClientIP), maxClientIPBytes)
	case len(cb.OptPlatform) > maxOptPlatformBytes:
		return badRequest("OptPlatform is %d bytes; at most %d are accepted", len(cb.OptPlatform), maxOptPlatformBytes)
	}
	for i, s := range cb.Subscribers {
		if s == "" {
			return badRequest("SubscribeAccountList[%d].Subscriber_Account is empty", i)
		}
		if len(s) > maxUserIDBytes {
			return badRequest("SubscribeAccountList[%d].Subscriber_Account is %d bytes; Tencent allows at most %d", i, len(s), maxUserIDBytes)
		}
	}
	return nil
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
