package rgwobj

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBucketVersioningRefusesGarbage: a 200 whose body is not a
// versioning configuration (a proxy's HTML page: make chaos's spoiled
// answers of zone-b) read as "never versioned" let the applier write a null
// version into zone-b's enabled bucket — a second "null" entry no DELETE
// removes (make chaos seed 4, 11 keys; FACTS.md section 20). Only the
// gateway's own documents (recorded on the lab) are read; anything else is
// an error.
func TestBucketVersioningRefusesGarbage(t *testing.T) {
	answers := map[string]string{
		"never":     `<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></VersioningConfiguration>`,
		"suspended": `<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Suspended</Status><MfaDelete>Disabled</MfaDelete></VersioningConfiguration>`,
		"html":      `<html><body>502 Bad Gateway (chaos)</body></html>`,
		"truncated": `<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Sta`,
		"odd":       `<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration><Status>Maybe</Status></VersioningConfiguration>`,
		"empty":     ``,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(answers[r.URL.Path[1:]]))
	}))
	defer srv.Close()
	c, err := New(Config{Endpoint: srv.URL, AccessKey: "AK", SecretKey: "SK"})
	require.NoError(t, err)
	ctx := context.Background()
	st, err := c.BucketVersioning(ctx, "never")
	require.NoError(t, err)
	require.Equal(t, "", st)
	st, err = c.BucketVersioning(ctx, "suspended")
	require.NoError(t, err)
	require.Equal(t, "Suspended", st)
	for _, b := range []string{"html", "truncated", "odd", "empty"} {
		_, err := c.BucketVersioning(ctx, b)
		require.Error(t, err, b)
		require.ErrorContains(t, err, "versioning of "+b, b)
	}
}

// TestStatRefusesAnACLThatIsNot: the ACL read with an object's attributes
// must be the gateway's AccessControlPolicy; a proxy's page is an error,
// not the object's ACL.
func TestStatRefusesAnACLThatIsNot(t *testing.T) {
	pre := load(t, "stat-acl-prepend")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("acl") {
			_, _ = w.Write([]byte(`<html><body>502 Bad Gateway (chaos)</body></html>`))
			return
		}
		for k, v := range pre.Header {
			if k != "Content-Length" {
				w.Header().Set(k, v)
			}
		}
		w.WriteHeader(pre.Status)
		_, _ = w.Write(pre.Body)
	}))
	defer srv.Close()
	c, err := New(Config{Endpoint: srv.URL, AccessKey: "AK", SecretKey: "SK"})
	require.NoError(t, err)
	_, err = c.Stat(context.Background(), "b", "acl", "")
	require.ErrorContains(t, err, "not an access control policy")
}
