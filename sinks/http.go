package sinks

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chat-operators/officialaccount-operator/api/v1alpha1"
)

// DefaultHTTPTimeout applies when a sink sets none.
const DefaultHTTPTimeout = 10 * time.Second

// HTTP POSTs each event to a URL, as a CloudEvent or as Tencent's own callback body.
type HTTP struct {
	url        string
	format     v1alpha1.HTTPFormat
	headers    map[string]string
	signingKey []byte
	client     *http.Client
	now        func() time.Time
}

// NewHTTP builds an HTTP sink; signingKey (from ParseSigningSecret) may be nil.
func NewHTTP(dest *v1alpha1.HTTPDestination, signingKey []byte) (*HTTP, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if len(dest.CABundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(dest.CABundle) {
			return nil, errors.New("caBundle holds no PEM certificate")
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	timeout := DefaultHTTPTimeout
	if dest.Timeout != nil && dest.Timeout.Duration > 0 {
		timeout = dest.Timeout.Duration
	}
	format := dest.Format
	if format == "" {
		format = v1alpha1.HTTPFormatCloudEvents
	}
	return &HTTP{
		url:        dest.URL,
		format:     format,
		headers:    dest.Headers,
		signingKey: signingKey,
		client: &http.Client{Transport: transport, Timeout: timeout,
			// Never follow a redirect: a 301, 302 or 303 turns the POST into a GET without
			// its body, and a login page at the end would answer 200 to an event never
			// received. A redirect is an answer like any other (see Deliver).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		now: time.Now,
	}, nil
}

// Close drops the sink's idle connections.
func (h *HTTP) Close() error {
	h.client.CloseIdleConnections()
	return nil
}

// Deliver POSTs the event once. The resource name travels as the idempotency key so that
// a receiver can drop the repeats that at-least-once delivery allows.
func (h *HTTP) Deliver(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) error {
	req, err := h.newRequest(ctx, event)
	if err != nil {
		return Permanent(err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		// The client's error names the method and URL again ("Post \"http://x\": ..."):
		// keep what went wrong, said once, in the sink's status.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return fmt.Errorf("POST %s: %w", Redacted(h.url), err)
	}
	defer resp.Body.Close()
	// Read a little of the answer for the error message, then drain so the connection is reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	outcome := classifyHTTPStatus(resp.StatusCode)
	if outcome == httpDelivered {
		return nil
	}
	if outcome == httpRedirected {
		// A sink's URL that moved is its configuration to fix, not a moment to wait out:
		// fail at once (the event is kept, and the retry annotation sends it again).
		return Permanent(fmt.Errorf("POST %s: %s, redirected to %q: sinks never follow redirects; set the sink's url to the address the event should go to",
			Redacted(h.url), resp.Status, Redacted(resp.Header.Get("Location"))))
	}
	err = fmt.Errorf("POST %s: %s: %s", Redacted(h.url), resp.Status, strings.TrimSpace(string(snippet)))
	if outcome == httpRejected {
		return Permanent(err)
	}
	return &DeliveryError{Err: err, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), h.now())}
}

func (h *HTTP) newRequest(ctx context.Context, event *v1alpha1.OfficialAccountSubscription) (*http.Request, error) {
	var body []byte
	var err error
	if h.format == v1alpha1.HTTPFormatTencent {
		body, err = tencentBody(event)
	} else {
		body, err = cloudEventData(event)
	}
	if err != nil {
		return nil, fmt.Errorf("encoding the event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		// net/url's error quotes the whole URL, its credentials included.
		return nil, fmt.Errorf("the sink's url %s cannot be requested", Redacted(h.url))
	}
	// The sink's own headers first, so that they cannot override the protocol's.
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "officialaccount-operator")
	id := MessageID(ctx, event)
	req.Header.Set("Idempotency-Key", id)
	if h.format == v1alpha1.HTTPFormatCloudEvents {
		setCloudEventHeaders(req.Header, event)
	}
	setExtensionHeaders(ctx, req.Header, h.format)
	if h.signingKey != nil {
		now := h.now()
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", standardWebhooksSignature(h.signingKey, id, now, body))
	}
	return req, nil
}

// setCloudEventHeaders writes the CloudEvents attributes in binary content mode.
func setCloudEventHeaders(h http.Header, event *v1alpha1.OfficialAccountSubscription) {
	for name, value := range cloudEventAttributes(event) {
		h.Set("ce-"+name, value)
	}
}

type httpOutcome int

const (
	httpDelivered httpOutcome = iota
	httpRetry
	httpRejected
	httpRedirected
)

// classifyHTTPStatus decides what an answer means: 2xx delivered; 3xx a redirect, which is
// never followed; timeouts, "too early", rate limits and server errors are worth
// retrying, and so are refused credentials (401, 403), which are nearly always the sink's
// credentials being rotated, not the event; any other answer is the receiver refusing the
// event, which retrying will not change.
func classifyHTTPStatus(code int) httpOutcome {
	switch {
	case code >= 200 && code < 300:
		return httpDelivered
	case code >= 300 && code < 400:
		return httpRedirected
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests,
		code == http.StatusUnauthorized, code == http.StatusForbidden, code >= 500:
		return httpRetry
	default:
		return httpRejected
	}
}

// parseRetryAfter reads a Retry-After header in seconds or as an HTTP date; 0 if absent
// or unreadable.
func parseRetryAfter(value string, now time.Time) time.Duration {
	if value == "" {
		return 0
	}
	if seconds, err := strconv.Atoi(strings.TrimSpace(value)); err == nil {
		if seconds < 0 {
			return 0
		}
		return time.Duration(seconds) * time.Second
	}
	if at, err := http.ParseTime(value); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}
