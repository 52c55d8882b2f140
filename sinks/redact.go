package sinks

import (
	"net/url"
	"strings"
)

// Redacted is an address as an error may show it: scheme, host and path, without the
// userinfo, query string and fragment, which may carry a password or a token. An error
// ends up in the sink's status, its Events and the logs, which more people read than may
// read the sink's Secret. A comma-separated list (NATS servers) is redacted item by item.
func Redacted(address string) string {
	parts := strings.Split(address, ",")
	for i, part := range parts {
		parts[i] = redactedURL(strings.TrimSpace(part))
	}
	return strings.Join(parts, ",")
}

func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)" // its text may hold anything
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}
