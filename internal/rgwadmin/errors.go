package rgwadmin

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Sentinels for the answers callers branch on. Test with errors.Is; the
// error itself is a *GatewayError carrying status, code and request id.
var (
	// ErrNotFound: 404 (code NoSuchKey on this gateway): no such metadata
	// key, or an unlock by a locker that does not hold the lock.
	ErrNotFound = errors.New("rgwadmin: not found")
	// ErrLocked: 423, the mdlog shard lock is held by another locker.
	ErrLocked = errors.New("rgwadmin: locked by another locker")
	// ErrAuth: 403 SignatureDoesNotMatch, InvalidAccessKeyId or AccessDenied.
	ErrAuth = errors.New("rgwadmin: the gateway refused the credentials: the access key or the secret key is wrong, or the user is not a system user")
)

// authCodes are the 403 codes that mean "these keys are wrong / not allowed".
var authCodes = map[string]bool{
	"SignatureDoesNotMatch": true,
	"InvalidAccessKeyId":    true,
	"AccessDenied":          true,
}

// GatewayError is a non-2xx answer of the gateway, on the admin API (this
// package) or the S3 API (rgwobj, which sets NotFound): the one error type
// of both clients.
type GatewayError struct {
	Op        string // "list mdlog shard 3"
	Method    string
	Path      string // "/admin/log"
	Query     string // the encoded query sent (signature excluded)
	Status    int
	Code      string // "NoSuchKey", "Locked", "SignatureDoesNotMatch", …
	RequestID string // "tx00000…-zone-a", to find the request in the gateway's log
	Message   string
	Attempts  int // how many times the request was sent (>1 after retried 5xx)
	// NotFound is the sentinel a 404 matches (errors.Is); nil means this
	// package's ErrNotFound. A 404 of the S3 API (rgwobj.ErrNotFound) is
	// kept apart from one of the admin API: neither is proof that
	// something is gone, and a caller that reads "metadata key gone" from
	// ErrNotFound must never be handed an object's 404.
	NotFound error
}

// NewGatewayError is the error of a non-2xx answer whose body is body
// (the gateway's JSON or XML error document, or anything else). notFound
// is the sentinel a 404 matches (nil: ErrNotFound).
func NewGatewayError(op, method, path, query string, status int, requestID string, body []byte, attempts int, notFound error) *GatewayError {
	e := &GatewayError{Op: op, Method: method, Path: path, Query: query, Status: status, RequestID: requestID,
		Attempts: attempts, NotFound: notFound}
	code, msg, reqID := parseErrorBody(body)
	e.Code, e.Message = code, msg
	if e.RequestID == "" {
		e.RequestID = reqID
	}
	if e.Code == "" && e.Message == "" && len(body) > 0 && !json.Valid(body) {
		// Not an RGW error document (a proxy's page?): show its start.
		e.Message = snippet(body, 200)
	}
	return e
}

func newGatewayError(r request, resp *response, attempts int) *GatewayError {
	return NewGatewayError(r.op, r.method, r.path, r.query.Encode(), resp.status, resp.header.Get("X-Amz-Request-Id"), resp.body, attempts, nil)
}

// parseErrorBody reads RGW's error document: JSON on the admin API
// ({"Code","Message","RequestId","HostId"}), XML on the S3 API.
func parseErrorBody(b []byte) (code, msg, reqID string) {
	var j struct {
		Code      string `json:"Code"`
		Message   string `json:"Message"`
		RequestID string `json:"RequestId"`
	}
	if json.Unmarshal(b, &j) == nil && j.Code != "" {
		return j.Code, j.Message, j.RequestID
	}
	var x struct {
		Code      string `xml:"Code"`
		Message   string `xml:"Message"`
		RequestID string `xml:"RequestId"`
	}
	if xml.Unmarshal(b, &x) == nil && x.Code != "" {
		return x.Code, x.Message, x.RequestID
	}
	return "", "", ""
}

func (e *GatewayError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s: status %d", e.Op, e.Method, e.Path, e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, " %q", e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request id " + e.RequestID + ")")
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " after %d attempts", e.Attempts)
	}
	switch {
	case e.isAuth():
		b.WriteString(": the access key or the secret key is wrong, or the user is not a system user")
	case e.Status == 423:
		b.WriteString(": held by another locker")
	}
	return b.String()
}

func (e *GatewayError) isAuth() bool { return e.Status == 403 && authCodes[e.Code] }

// Is makes errors.Is(err, ErrNotFound / ErrLocked / ErrAuth) work.
func (e *GatewayError) Is(target error) bool {
	switch target {
	case e.NotFound, ErrNotFound:
		if e.Status != 404 {
			return false
		}
		return target == e.NotFound || e.NotFound == nil
	case ErrLocked:
		return e.Status == 423
	case ErrAuth:
		return e.isAuth()
	}
	return false
}

// DecodeError is a 2xx answer that is not the JSON the operation expects.
type DecodeError struct {
	Op   string
	Body []byte // the answer (the whole of it; Error shows ~200 bytes)
	Err  error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%s: decode answer (%d bytes): %v; answer starts %q", e.Op, len(e.Body), e.Err, snippet(e.Body, 200))
}

func (e *DecodeError) Unwrap() error { return e.Err }

// snippet is the first n bytes of b, cut on a rune boundary, with "…" when cut.
func snippet(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n]) + "…"
}
