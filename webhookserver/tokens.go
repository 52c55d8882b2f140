package webhookserver

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Tokens are the webhook authentication tokens by SDKAppID. An app may have several, any
// of which verifies a request: that is how a token is rotated without a gap (add the new
// one, switch Tencent's console to it, remove the old one).
type Tokens map[string][]string

// LoadTokens reads a file of "SDKAppID=token" lines (blank lines and # comments allowed,
// one line per token, several lines per app), as a mounted Secret provides it. Errors
// name the line, never the token.
func LoadTokens(path string) (Tokens, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the auth token file: %w", err)
	}
	return parseTokens(bufio.NewScanner(bytes.NewReader(b)))
}

func parseTokens(sc *bufio.Scanner) (Tokens, error) {
	tokens := Tokens{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		app, token, ok := strings.Cut(line, "=")
		app, token = strings.TrimSpace(app), strings.TrimSpace(token)
		if !ok || app == "" || token == "" {
			return nil, fmt.Errorf("auth token file, line %d: want SDKAppID=token", n)
		}
		if slices.Contains(tokens[app], token) {
			return nil, fmt.Errorf("auth token file, line %d: the same token of SDKAppID %s again", n, app)
		}
		tokens[app] = append(tokens[app], token)
	}
	return tokens, sc.Err()
}

// checkTokens says what is wrong with tokens for the accepted apps: a token for an app
// that is not accepted (a typo), or, unless unsigned callbacks are allowed, an accepted
// app with no token, whose webhook anyone who knows the URL could fill.
func checkTokens(tokens Tokens, apps []string, allowUnsigned bool) error {
	for app := range tokens {
		if !slices.Contains(apps, app) {
			return fmt.Errorf("a token is configured for SDKAppID %q, which is not among the accepted SDKAppIDs", app)
		}
	}
	if allowUnsigned {
		return nil
	}
	for _, app := range apps {
		if len(tokens[app]) == 0 {
			return fmt.Errorf("SDKAppID %s has no webhook authentication token, so anyone who knows the webhook's URL could store events: "+
				"set the token of Tencent's console (Callback configuration, authentication token) in --auth-token-file as a line %s=<token>, "+
				"or accept unsigned callbacks explicitly with --allow-unsigned-callbacks", app, app)
		}
	}
	return nil
}

// unsignedApps counts the accepted apps that have no token.
func unsignedApps(tokens Tokens, apps []string) int {
	n := 0
	for _, app := range apps {
		if len(tokens[app]) == 0 {
			n++
		}
	}
	return n
}
