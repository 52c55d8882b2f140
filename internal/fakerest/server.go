// Package fakerest is a local stand-in for Tencent Cloud Chat's REST API, written from the
// documented request and answer shapes (../shared/docs/tencent-rest.md): it checks the
// query and the UserSig, pages get_subscriber_info with Next, limits calls per second and
// can be told to fail. Tests and `make run`'s demo use it; nothing here can reach Tencent.
package fakerest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Subscriber is one member of an Official Account.
type Subscriber struct {
	Account       string
	SubscribeTime time.Time
}

// Server answers the REST API for one app.
type Server struct {
	SDKAppID   uint64
	Identifier string // the app's admin account
	SecretKey  string
	// RateLimit is the calls per second answered before 60018 (Tencent: 200).
	RateLimit int
	// AfterCall, when set, runs after each answer with the number of calls so far, so
	// that a test can change the members while a listing pages through them.
	AfterCall func(calls int)

	mu       sync.Mutex
	accounts map[string][]Subscriber
	failures []int // error codes to answer the next calls with, in turn
	missOnce map[string]map[string]bool
	calls    int
	byAcct   map[string][]time.Time // when each call for the account came
	delays   map[string]time.Duration
	second   time.Time
	inSecond int
}

// New is a server for one app with Tencent's rate limit.
func New(sdkAppID uint64, identifier, secretKey string) *Server {
	return &Server{SDKAppID: sdkAppID, Identifier: identifier, SecretKey: secretKey, RateLimit: 200,
		accounts: map[string][]Subscriber{}, missOnce: map[string]map[string]bool{}, byAcct: map[string][]time.Time{}, delays: map[string]time.Duration{}}
}

// MissOnce leaves a member out of the next page that would list them, as a paging that
// is not consistent while members change may: Tencent's count still includes them.
func (s *Server) MissOnce(account, member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.missOnce[account] == nil {
		s.missOnce[account] = map[string]bool{}
	}
	s.missOnce[account][member] = true
}

// Subscribe adds a member at the end of the listing.
func (s *Server) Subscribe(account string, member Subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[account] = append(s.accounts[account], member)
}

// Destroy makes an account unknown: its calls answer 130004.
func (s *Server) Destroy(account string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.accounts, account)
}

// CallsFor counts the calls that asked for an account's subscribers.
func (s *Server) CallsFor(account string) int { return len(s.CallTimesFor(account)) }

// CallTimesFor is when each call for the account came.
func (s *Server) CallTimesFor(account string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.byAcct[account])
}

// Delay answers each call for the account after d, as a slow API would.
func (s *Server) Delay(account string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays[account] = d
}

// SetSubscribers makes an account exist with these members, in this order.
func (s *Server) SetSubscribers(account string, members []Subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[account] = slices.Clone(members)
}

// Unsubscribe removes a member.
func (s *Server) Unsubscribe(account, member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[account] = slices.DeleteFunc(s.accounts[account], func(m Subscriber) bool { return m.Account == member })
}

// FailNext answers the next calls with these error codes, one call each.
func (s *Server) FailNext(codes ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, codes...)
}

// Calls counts the calls answered so far, failed ones included.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

type answer struct {
	ActionStatus string `json:"ActionStatus"`
	ErrorCode    int    `json:"ErrorCode"`
	ErrorInfo    string `json:"ErrorInfo"`
}

type subscriberEntry struct {
	Account         string `json:"Subscriber_Account"`
	SubscribeTime   int64  `json:"SubscribeTime"`
	CustomString    string `json:"CustomString"`
	MsgFlag         string `json:"MsgFlag"`
	LastSendMsgTime int64  `json:"LastSendMsgTime"`
}

type subscriberPage struct {
	answer
	Next           string            `json:"Next"`
	SubscriberNum  int               `json:"SubscriberNum"`
	SubscriberList []subscriberEntry `json:"SubscriberList"`
}

// ServeHTTP answers POST /v4/official_account_open_http_svc/get_subscriber_info.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != "/v4/official_account_open_http_svc/get_subscriber_info" {
		writeJSON(w, fail(20001, "unknown command "+r.URL.Path))
		return
	}
	var req struct {
		Account *string `json:"Official_Account"`
		Limit   *int    `json:"Limit"`
		Next    *string `json:"Next"`
	}
	decodeErr := json.NewDecoder(r.Body).Decode(&req)
	if req.Account != nil {
		s.mu.Lock()
		s.byAcct[*req.Account] = append(s.byAcct[*req.Account], time.Now())
		delay := s.delays[*req.Account]
		s.mu.Unlock()
		time.Sleep(delay) // a stand-in's slowness, asked for by a test
	}
	if code, info := s.admit(r); code != 0 {
		writeJSON(w, fail(code, info))
		return
	}
	if decodeErr != nil {
		writeJSON(w, fail(6017, "the body is not JSON: "+decodeErr.Error()))
		return
	}
	switch {
	case req.Account == nil || *req.Account == "":
		writeJSON(w, fail(6017, "Official_Account is required"))
		return
	case req.Next == nil:
		writeJSON(w, fail(6017, "Next is required"))
		return
	case req.Limit != nil && (*req.Limit < 1 || *req.Limit > 200):
		writeJSON(w, fail(6017, "Limit must be 1 to 200"))
		return
	}
	limit := 200
	if req.Limit != nil {
		limit = *req.Limit
	}
	writeJSON(w, s.page(*req.Account, *req.Next, limit))
	if s.AfterCall != nil {
		s.AfterCall(s.Calls())
	}
}

// admit checks the query and the UserSig, the rate limit and the failures asked for, and
// counts the call.
func (s *Server) admit(r *http.Request) (int, string) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if now := time.Now().Truncate(time.Second); !now.Equal(s.second) {
		s.second, s.inSecond = now, 0
	}
	s.inSecond++
	switch {
	case q.Get("contenttype") != "json":
		return 6017, "contenttype must be json"
	case q.Get("random") == "":
		return 6017, "random is required"
	case q.Get("sdkappid") != strconv.FormatUint(s.SDKAppID, 10):
		return 60006, "SDKAppID invalid"
	case q.Get("identifier") != s.Identifier:
		return 60010, "the request needs the app admin"
	}
	if code, info := verifyUserSig(q.Get("usersig"), s.SDKAppID, q.Get("identifier"), s.SecretKey, time.Now()); code != 0 {
		return code, info
	}
	if s.RateLimit > 0 && s.inSecond > s.RateLimit {
		return 60018, "call frequency over the limit"
	}
	if len(s.failures) > 0 {
		code := s.failures[0]
		s.failures = s.failures[1:]
		return code, "failure asked for by the test"
	}
	return 0, ""
}

// page is one page from the offset that next encodes.
func (s *Server) page(account, next string, limit int) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	members, ok := s.accounts[account]
	if !ok {
		return fail(130004, "the Official Account does not exist or was destroyed")
	}
	offset := 0
	if next != "" {
		var err error
		if offset, err = strconv.Atoi(next); err != nil || offset < 0 || offset > len(members) {
			return fail(6017, "Next is not one this server gave")
		}
	}
	end := min(offset+limit, len(members))
	page := subscriberPage{answer: answer{ActionStatus: "OK"}, SubscriberNum: len(members), SubscriberList: []subscriberEntry{}}
	for _, m := range members[offset:end] {
		if s.missOnce[account][m.Account] {
			delete(s.missOnce[account], m.Account)
			continue
		}
		page.SubscriberList = append(page.SubscriberList, subscriberEntry{Account: m.Account, SubscribeTime: m.SubscribeTime.Unix(),
			MsgFlag: "AcceptAndNotify"})
	}
	if end < len(members) {
		page.Next = strconv.Itoa(end)
	}
	return page
}

func fail(code int, info string) answer {
	return answer{ActionStatus: "FAIL", ErrorCode: code, ErrorInfo: info}
}

func writeJSON(w http.ResponseWriter, v any) {
	_ = json.NewEncoder(w).Encode(v)
}
