package webhookserver

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

func TestAnswersAreTheJSONTencentExpects(t *testing.T) {
	ok := httptest.NewRecorder()
	writeAnswer(ok, answer{status: http.StatusOK})
	var got, want any
	if err := json.Unmarshal(ok.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(testenv.Fixture("response-ok.json"), &want)
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) || ok.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("OK answer %s (%s), want %s", gotJSON, ok.Header().Get("Content-Type"), wantJSON)
	}

	fail := httptest.NewRecorder()
	writeAnswer(fail, answer{status: http.StatusForbidden, info: "SdkAppid is missing from the query"})
	var body tencentAnswer
	if err := json.Unmarshal(fail.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if fail.Code != http.StatusForbidden || body != (tencentAnswer{ActionStatus: "FAIL", ErrorCode: 403, ErrorInfo: "SdkAppid is missing from the query"}) {
		t.Fatalf("FAIL answer %d %+v", fail.Code, body)
	}
}
