package webhookserver

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// LoadTokens reads a file of "SDKAppID=token" lines (blank lines and # comments allowed),
// as a mounted Secret provides it. Errors name the line, never the token.
func LoadTokens(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the auth token file: %w", err)
	}
	defer f.Close()
	return parseTokens(bufio.NewScanner(f))
}

func parseTokens(sc *bufio.Scanner) (map[string]string, error) {
	tokens := map[string]string{}
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
		if _, dup := tokens[app]; dup {
			return nil, fmt.Errorf("auth token file, line %d: SDKAppID %s has a token already", n, app)
		}
		tokens[app] = token
	}
	return tokens, sc.Err()
}
