package tencent

import (
	"fmt"
	"net/url"
	"strings"
)

// RESTDomains are the domain suffixes of Tencent's REST API, its regions' domains and
// their backups (tencent-rest.md: console.tim.qq.com, adminapi*.im.qcloud.com,
// adminapi*.my-imcloud.com).
var RESTDomains = []string{".tim.qq.com", ".im.qcloud.com", ".my-imcloud.com"}

// CheckEndpoint tells whether the app's admin credentials may be sent to endpoint: an
// https URL of one of Tencent's REST domains, on the default port, or one under a prefix
// of allowed (the operator's --tencent-rest-endpoints: a local stand-in, a proxy). A
// prefix matches by scheme, host and port exactly and by whole path segments, so that
// "https://a.example" does not admit "https://a.example.evil".
func CheckEndpoint(endpoint string, allowed []string) error {
	u, err := parseBaseURL(endpoint)
	if err != nil {
		return err
	}
	for _, prefix := range allowed {
		p, err := parseBaseURL(prefix)
		if err == nil && p.Scheme == u.Scheme && strings.EqualFold(p.Host, u.Host) && underPath(u.Path, p.Path) {
			return nil
		}
	}
	host := strings.ToLower(u.Hostname())
	if u.Scheme == "https" && (u.Port() == "" || u.Port() == "443") {
		for _, domain := range RESTDomains {
			if strings.HasSuffix(host, domain) {
				return nil
			}
		}
	}
	return fmt.Errorf("%s is not Tencent's REST API (https on %s) and not in the operator's --tencent-rest-endpoints: "+
		"every call carries the app's admin UserSig, so none is made", u.Redacted(), strings.Join(RESTDomains, ", "))
}

// ValidatePrefix tells whether an allowlist entry is a URL CheckEndpoint can match.
func ValidatePrefix(prefix string) error {
	_, err := parseBaseURL(prefix)
	return err
}

// parseBaseURL reads an absolute http(s) URL without user, query or fragment.
func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("endpoint is not a URL")
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		return nil, fmt.Errorf("endpoint must be an absolute http:// or https:// URL")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("endpoint must carry no user, query or fragment")
	}
	return u, nil
}

// underPath tells whether path is prefix or below it, segment by segment.
func underPath(path, prefix string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	return prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
}
