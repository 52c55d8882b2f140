// Command fake-tencent-rest serves a local stand-in of Tencent Cloud Chat's REST API
// (get_subscriber_info, with UserSig checks, paging and the rate limit), so that an
// OfficialAccountResync can be tried without a Tencent account:
//
//	go run ./hack/fake-tencent-rest -listen 127.0.0.1:8092 -account '@TOA#_demo=alice,bob,carol'
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/chat-operators/officialaccount-operator/internal/fakerest"
)

type accountList []string

func (a *accountList) String() string     { return strings.Join(*a, " ") }
func (a *accountList) Set(v string) error { *a = append(*a, v); return nil }

func main() {
	listen := flag.String("listen", "127.0.0.1:8092", "Address to serve on.")
	sdkAppID := flag.Uint64("sdk-app-id", 1400000000, "The app's SDKAppID.")
	identifier := flag.String("identifier", "administrator", "The app's admin account, which calls must be made as.")
	secretKey := flag.String("secret-key", "demo-secret-key", "The app's secret key, which UserSigs must be made from.")
	var accounts accountList
	flag.Var(&accounts, "account", "An Official Account and its subscribers, '@TOA#_x=alice,bob' (repeatable).")
	flag.Parse()

	srv := fakerest.New(*sdkAppID, *identifier, *secretKey)
	for _, a := range accounts {
		id, list, ok := strings.Cut(a, "=")
		if !ok {
			log.Fatalf("-account %q: want '@TOA#_x=alice,bob'", a)
		}
		var members []fakerest.Subscriber
		for _, m := range strings.Split(list, ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, fakerest.Subscriber{Account: m, SubscribeTime: time.Now()})
			}
		}
		srv.SetSubscribers(id, members)
		fmt.Printf("Official Account %s: %d subscriber(s)\n", id, len(members))
	}
	fmt.Printf("Tencent REST API stand-in for SDKAppID %d on http://%s (identifier %q)\n", *sdkAppID, *listen, *identifier)
	httpSrv := &http.Server{Addr: *listen, Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(httpSrv.ListenAndServe())
}
