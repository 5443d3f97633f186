package rgwobj

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rgwsync/rgwsync/internal/backoff"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/rgwsync/rgwsync/internal/rgwadmin"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultRegion  = "us-east-1"
	DefaultTimeout = 30 * time.Second
	// maxRetries and the backoff bounds apply to requests whose body can be
	// sent again (everything but the data of Put and of multipart parts).
	maxRetries     = 4
	retryBaseDelay = 200 * time.Millisecond
	retryMaxDelay  = 5 * time.Second
	// maxSmallBody caps answers read into memory (listings, ACLs, errors).
	maxSmallBody = 16 << 20
)

// Config configures a Client. Zero fields take the defaults.
type Config struct {
	Endpoint   string        // "http://127.0.0.1:8001", scheme://host[:port] only
	AccessKey  string        // a system user's keys
	SecretKey  string        //
	Region     string        // default "us-east-1"
	HTTPClient *http.Client  // default rgwadmin.NewHTTPClient()
	Timeout    time.Duration // per attempt of a request without a data stream, default 30s
	Logger     *slog.Logger  // default slog.Default()
}

// ErrNotFound is the gateway's 404: no such object, version or bucket
// (NoSuchKey, NoSuchVersion, NoSuchBucket). Test with errors.Is.
var ErrNotFound = errors.New("rgwobj: not found")

// ErrMarkerDeclined: the gateway answered a delete marker's DELETE with its
// version id but without x-amz-delete-marker and stored nothing. It does so
// when the key's current entry is a delete marker and the marker replaces
// no null version (FACTS.md section 22).
var ErrMarkerDeclined = errors.New("the gateway declined to lay the delete marker")

// GatewayError is a non-2xx answer of the gateway: the admin API's type,
// its 404 matching ErrNotFound (this package's), not rgwadmin.ErrNotFound.
type GatewayError = rgwadmin.GatewayError

// Client talks to one gateway. It is safe for concurrent use.
type Client struct {
	cfg    Config
	base   *url.URL
	creds  aws.Credentials
	signer *v4.Signer
	http   *http.Client
	log    *slog.Logger
}

// New checks cfg and returns a client. It does not contact the gateway.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || cfg.Endpoint == "" {
		return nil, fmt.Errorf("rgwobj: Config.Endpoint %q: want scheme://host[:port] (%v)", cfg.Endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("rgwobj: Config.Endpoint %q: want scheme://host[:port] only", cfg.Endpoint)
	}
	if strings.TrimSpace(cfg.AccessKey) == "" || strings.TrimSpace(cfg.SecretKey) == "" {
		return nil, errors.New("rgwobj: Config.AccessKey and Config.SecretKey must be a system user's keys")
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = rgwadmin.NewHTTPClient()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Client{
		cfg:   cfg,
		base:  &url.URL{Scheme: u.Scheme, Host: u.Host},
		creds: aws.Credentials{AccessKeyID: cfg.AccessKey, SecretAccessKey: cfg.SecretKey, Source: "rgwobj.Config"},
		// The path is escaped once by objectPath, exactly as RGW
		// re-encodes it for its canonical request (aws4_uri_recode).
		signer: v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }),
		http:   cfg.HTTPClient,
		log:    cfg.Logger,
	}, nil
}

// call is one S3 request before signing.
type call struct {
	op     string
	method string
	bucket string
	key    string // "" for a bucket request
	query  url.Values
	header http.Header
	// Exactly one of body (re-sendable, retried) or stream (sent once, not
	// retried, streamSize bytes) may be set.
	body       []byte
	stream     io.Reader
	streamSize int64
	// keepOpen: the 2xx answer's body is handed to the caller (Get), so no
	// per-attempt timeout bounds it; ctx does.
	keepOpen bool
}

const unsignedPayload = "UNSIGNED-PAYLOAD"

// send performs c, retrying 5xx answers and connection errors of requests
// without a stream, and returns the 2xx answer. The answer's body is read
// into memory (returned as data) unless keepOpen, then the caller closes
// resp.Body. A non-2xx answer is a *GatewayError.
func (c *Client) send(ctx context.Context, r call) (resp *http.Response, data []byte, err error) {
	retries := maxRetries
	if r.stream != nil {
		retries = 0
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			d := backoff.Delay(retryBaseDelay, retryMaxDelay, attempt-1)
			c.log.LogAttrs(ctx, slog.LevelWarn, "rgwobj: retrying", slog.String("op", r.op),
				slog.Int("attempt", attempt+1), slog.Duration("backoff", d), slog.Any("error", err))
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, nil, fmt.Errorf("%s: %w (last attempt: %v)", r.op, ctx.Err(), err)
			case <-t.C:
			}
		}
		resp, data, err = c.attempt(ctx, r)
		if err == nil {
			return resp, data, nil
		}
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("%s: %w", r.op, ctx.Err())
		}
		var gerr *GatewayError
		if (errors.As(err, &gerr) && gerr.Status < 500) || attempt >= retries {
			return nil, nil, err
		}
	}
}

func (c *Client) attempt(ctx context.Context, r call) (*http.Response, []byte, error) {
	actx, cancel := ctx, context.CancelFunc(func() {})
	if !r.keepOpen && r.stream == nil {
		actx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
	}
	path := objectPath(r.bucket, r.key)
	var body io.Reader
	payloadHash := unsignedPayload
	switch {
	case r.stream != nil:
		body = r.stream
	case r.body != nil:
		body = bytes.NewReader(r.body)
		sum := sha256.Sum256(r.body)
		payloadHash = hex.EncodeToString(sum[:])
	default:
		sum := sha256.Sum256(nil)
		payloadHash = hex.EncodeToString(sum[:])
	}
	req, err := http.NewRequestWithContext(actx, r.method, c.base.String(), body)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("%s: %w", r.op, err)
	}
	// Opaque is sent as is: no dot-segment removal, no re-escaping. The
	// signer reads the path from it too.
	req.URL.Opaque = path
	if r.query != nil {
		req.URL.RawQuery = r.query.Encode()
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	switch {
	case r.stream != nil:
		req.ContentLength = r.streamSize
		if r.streamSize == 0 {
			req.Body = http.NoBody
		}
	case r.body != nil:
		req.ContentLength = int64(len(r.body))
	}
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	if err := c.signer.SignHTTP(actx, c.creds, req, payloadHash, "s3", c.cfg.Region, time.Now().UTC()); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("%s: sign: %w", r.op, err)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("%s: %s %s: %w", r.op, r.method, path, err)
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "rgwobj: request", slog.String("op", r.op),
		slog.String("method", r.method), slog.String("path", path), slog.Int("status", resp.StatusCode),
		slog.Duration("latency", time.Since(start)))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 && r.keepOpen {
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil, nil
	}
	defer cancel()
	defer resp.Body.Close()
	size := resp.ContentLength
	if r.method == http.MethodHead {
		size = 0 // Content-Length is the object's; a HEAD answer has no body
	}
	data, err := readAnswer(resp.Body, size, maxSmallBody)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: read answer (status %d): %w", r.op, resp.StatusCode, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return nil, nil, gatewayError(r, path, resp, data)
	}
	return resp, data, nil
}

// readAnswer reads an answer of at most limit bytes into a buffer of its
// announced size when there is one: io.ReadAll grows its buffer by
// doubling, and a small object's body kept from that buffer (sent inline)
// held up to twice its size beside the bytes it was counted for.
func readAnswer(r io.Reader, size, limit int64) ([]byte, error) {
	if size < 0 || size > limit {
		return io.ReadAll(io.LimitReader(r, limit))
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func gatewayError(r call, path string, resp *http.Response, body []byte) *GatewayError {
	return rgwadmin.NewGatewayError(r.op, r.method, path, "", resp.StatusCode, resp.Header.Get("X-Amz-Request-Id"), body, 1, ErrNotFound)
}

// objectPath is the request path, escaped once: every byte but the
// unreserved ones (A-Z a-z 0-9 - _ . ~) and '/' as %XX. RGW decodes the
// path and encodes it again with the same rule for the SigV4 canonical URI
// (rgw_auth_s3.cc get_v4_canonical_uri → aws4_uri_recode), so what is sent
// is what both sides sign. A tenant's bucket "tenant/name" is addressed as
// "tenant:name".
func objectPath(bucket, key string) string {
	var b strings.Builder
	b.WriteByte('/')
	b.WriteString(escape(strings.Replace(bucket, "/", ":", 1), false))
	if key != "" {
		b.WriteByte('/')
		b.WriteString(escape(key, true))
	}
	return b.String()
}

func escape(s string, keepSlash bool) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if 'A' <= ch && ch <= 'Z' || 'a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' ||
			ch == '-' || ch == '_' || ch == '.' || ch == '~' || (keepSlash && ch == '/') {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[ch>>4])
		b.WriteByte(hexdig[ch&15])
	}
	return b.String()
}
