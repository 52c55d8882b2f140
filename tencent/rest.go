package tencent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Regions are the REST API's domains by region, from Tencent's "calling the REST API" page.
var Regions = map[string]string{
	"china":          "console.tim.qq.com",
	"singapore":      "adminapisgp.im.qcloud.com",
	"seoul":          "adminapikr.im.qcloud.com",
	"frankfurt":      "adminapiger.im.qcloud.com",
	"silicon-valley": "adminapiusa.im.qcloud.com",
	"jakarta":        "adminapiidn.im.qcloud.com",
	"tokyo":          "adminapijpn.im.qcloud.com",
}

// userSigTTL is how long each UserSig the client makes is valid; it makes a new one well
// before, and when Tencent answers 70001 (expired).
const userSigTTL = 24 * time.Hour

// Client calls the REST API as the app's admin account.
type Client struct {
	Endpoint   string // https://domain, or a stand-in's URL
	SDKAppID   uint64
	Identifier string // the app's admin account
	SecretKey  string
	HTTP       *http.Client // with a timeout; each call also has its context's deadline
	// Observe, when set, is told each call's command and outcome (see CallOutcome).
	Observe func(command, outcome string)

	mu       sync.Mutex
	sig      string
	sigUntil time.Time
}

// Error is an answer whose ActionStatus is not OK, with Tencent's code and message.
type Error struct {
	Code int
	Info string
}

func (e *Error) Error() string { return fmt.Sprintf("Tencent REST API error %d: %s", e.Code, e.Info) }

// Retryable tells a frequency limit or an internal error, which a later call may pass.
func (e *Error) Retryable() bool {
	switch e.Code {
	case 60007, 60011, 60018, 60019, 10004, 20005:
		return true
	}
	return false
}

// CodeAccountNotFound: the Official Account does not exist or was destroyed.
const CodeAccountNotFound = 130004

// UserSigExpired tells that a new UserSig is needed.
func (e *Error) UserSigExpired() bool { return e.Code == 70001 }

// Refused tells that Tencent refused the credentials, the admin account or the service
// (not enabled): retrying cannot mend it, whatever the account.
func (e *Error) Refused() bool {
	switch e.Code {
	case 60006, 60010, 70003, 70009, 70013, 70014, 131000:
		return true
	}
	return false
}

// Subscriber is one entry of get_subscriber_info's SubscriberList.
type Subscriber struct {
	Account       string `json:"Subscriber_Account"`
	SubscribeTime int64  `json:"SubscribeTime"` // Unix seconds
}

// SubscriberPage is one answer of get_subscriber_info.
type SubscriberPage struct {
	Next          string       `json:"Next"`
	SubscriberNum int          `json:"SubscriberNum"`
	Subscribers   []Subscriber `json:"SubscriberList"`
}

// MaxPageSize is get_subscriber_info's largest Limit.
const MaxPageSize = 200

// SubscriberPage asks for one page of an Official Account's subscribers, from next ("" for
// the first).
func (c *Client) SubscriberPage(ctx context.Context, account, next string) (_ *SubscriberPage, err error) {
	const command = "get_subscriber_info"
	defer func() {
		if c.Observe != nil {
			c.Observe(command, CallOutcome(err))
		}
	}()
	body := map[string]any{"Official_Account": account, "Limit": MaxPageSize, "Next": next}
	var page struct {
		answer
		SubscriberPage
	}
	if err := c.call(ctx, "official_account_open_http_svc", command, body, &page); err != nil {
		return nil, err
	}
	if err := page.err(); err != nil {
		return nil, err
	}
	return &page.SubscriberPage, nil
}

// CallOutcome names a call's outcome for metrics: "0" for success, Tencent's error code,
// or "error" for an answer that never came or was not Tencent's JSON.
func CallOutcome(err error) string {
	var tencentErr *Error
	switch {
	case err == nil:
		return "0"
	case errors.As(err, &tencentErr):
		return strconv.Itoa(tencentErr.Code)
	default:
		return "error"
	}
}

// NoRedirects is an http.Client's CheckRedirect that follows none: every call's URL
// carries the admin UserSig, and it goes only where the endpoint was allowed to.
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// answer is what every REST answer carries.
type answer struct {
	ActionStatus string `json:"ActionStatus"`
	ErrorCode    int    `json:"ErrorCode"`
	ErrorInfo    string `json:"ErrorInfo"`
}

func (a answer) err() error {
	if a.ActionStatus == "OK" && a.ErrorCode == 0 {
		return nil
	}
	return &Error{Code: a.ErrorCode, Info: a.ErrorInfo}
}

// call POSTs one command and decodes its answer into out.
func (c *Client) call(ctx context.Context, service, command string, body, out any) error {
	sig, err := c.userSig()
	if err != nil {
		return err
	}
	q := url.Values{"sdkappid": {strconv.FormatUint(c.SDKAppID, 10)}, "identifier": {c.Identifier}, "usersig": {sig},
		"random": {strconv.FormatUint(uint64(rand.Uint32()), 10)}, "contenttype": {"json"}}
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Endpoint+"/v4/"+service+"/"+command+"?"+q.Encode(), bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		// The URL carries the UserSig: name the command, never the URL.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("calling %s: %w", command, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", command, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered HTTP %s", command, resp.Status)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("the answer of %s is not the documented JSON: %w", command, err)
	}
	return nil
}

// userSig returns a UserSig valid for a while yet, making a new one when needed.
func (c *Client) userSig() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sig != "" && time.Now().Before(c.sigUntil) {
		return c.sig, nil
	}
	sig, err := UserSig(c.SDKAppID, c.SecretKey, c.Identifier, userSigTTL)
	if err != nil {
		return "", err
	}
	c.sig, c.sigUntil = sig, time.Now().Add(userSigTTL/2)
	return sig, nil
}

// forgetUserSig makes the next call sign anew, after Tencent said the signature expired.
func (c *Client) forgetUserSig() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sig = ""
}
