package webhookserver

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// SourceFilter admits callbacks only from the addresses Tencent sends webhooks from
// (REST GetIPList, nettype 5 and 6). Behind an Ingress the peer is the Ingress, so the
// client is read from X-Forwarded-For, but only as far as the proxies in front are
// trusted: the header is the client's to write, and an entry added before a trusted proxy
// is whatever the client said.
type SourceFilter struct {
	// Allowed are the sources admitted; empty admits every source.
	Allowed []netip.Prefix
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
}

// ParsePrefixes reads CIDRs ("203.0.113.0/24") and single addresses ("203.0.113.7").
func ParsePrefixes(values []string) ([]netip.Prefix, error) {
	prefixes := make([]netip.Prefix, 0, len(values))
	for _, v := range values {
		if !strings.Contains(v, "/") {
			addr, err := netip.ParseAddr(v)
			if err != nil {
				return nil, fmt.Errorf("%q is no IP address or CIDR", v)
			}
			prefixes = append(prefixes, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("%q is no IP address or CIDR", v)
		}
		prefixes = append(prefixes, p.Masked())
	}
	return prefixes, nil
}

// admit returns nil when the request's source may send callbacks, or the 403 to answer.
func (f SourceFilter) admit(r *http.Request) *requestError {
	if len(f.Allowed) == 0 {
		return nil
	}
	source, ok := f.source(r)
	if !ok || !contains(f.Allowed, source) {
		return &requestError{status: http.StatusForbidden, result: "forbidden",
			info: fmt.Sprintf("source address %s is not among the addresses allowed to send callbacks (--allowed-source-cidrs)", sourceString(source, ok))}
	}
	return nil
}

// source is the request's client: the peer, or, while the peer is a trusted proxy, the
// address it says it forwarded for, read from the right of X-Forwarded-For.
func (f SourceFilter) source(r *http.Request) (netip.Addr, bool) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	source := peer.Addr().Unmap()
	var hops []string
	for _, header := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(header, ",")...)
	}
	for _, hop := range slices.Backward(hops) {
		if !contains(f.TrustedProxies, source) {
			break
		}
		addr, err := netip.ParseAddr(strings.TrimSpace(hop))
		if err != nil {
			return netip.Addr{}, false
		}
		source = addr.Unmap()
	}
	return source, true
}

func contains(prefixes []netip.Prefix, addr netip.Addr) bool {
	return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(addr) })
}

func sourceString(addr netip.Addr, ok bool) string {
	if !ok {
		return "(unreadable)"
	}
	return addr.String()
}
