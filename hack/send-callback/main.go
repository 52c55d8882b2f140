// Command send-callback POSTs Tencent Cloud Chat callback bodies to the webhook as Tencent
// does, signed when a token is given, and prints the answers.
//
//	go run ./hack/send-callback [--url URL] [--sdk-app-id ID] [--token TOKEN] FILE...
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

func main() {
	target := flag.String("url", "http://localhost:8090/callback", "The webhook URL.")
	sdkAppID := flag.String("sdk-app-id", "1400000000", "SdkAppid to send.")
	token := flag.String("token", "", "Webhook authentication token; when set, Sign and RequestTime are added.")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: send-callback [flags] FILE... (callback bodies, e.g. internal/testenv/fixtures/*.json)")
		os.Exit(2)
	}
	failed := false
	for _, file := range flag.Args() {
		if err := send(*target, *sdkAppID, *token, file); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func send(target, sdkAppID, token, file string) error {
	body, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var head struct{ CallbackCommand string }
	if err := json.Unmarshal(body, &head); err != nil {
		return fmt.Errorf("not a JSON callback body: %w", err)
	}
	q := url.Values{"SdkAppid": {sdkAppID}, "CallbackCommand": {head.CallbackCommand},
		"contenttype": {"json"}, "ClientIP": {"127.0.0.1"}, "OptPlatform": {"RESTAPI"}}
	if token != "" {
		requestTime := strconv.FormatInt(time.Now().Unix(), 10)
		sum := sha256.Sum256([]byte(token + requestTime))
		q.Set("RequestTime", requestTime)
		q.Set("Sign", hex.EncodeToString(sum[:]))
	}
	resp, err := http.Post(target+"?"+q.Encode(), "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s: %s %s", file, resp.Status, answer)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not accepted")
	}
	return nil
}
