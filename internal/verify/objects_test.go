package verify

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestListingWithoutETag: zone-a's own DELETE ?tagging empties the ETag of
// the object's index entry, the object keeps it (FACTS.md section 18:
// listing ETag "", HEAD ETag "ac7938d4…"). The listing is then no witness
// of the ETag, the object is: a chaos run counted 5 such entries as
// differences while both zones held the same object.
func TestListingWithoutETag(t *testing.T) {
	src := objVersion{Key: "p", VersionID: "", Latest: true, ETag: "", Size: 5}
	dst := objVersion{Key: "p", VersionID: "", Latest: true, ETag: "ac7938d40cfc2307e2bf325d28e7884e", Size: 5}
	require.Empty(t, diffListing(src, dst))
	require.Empty(t, diffListing(dst, src))

	other := dst
	other.ETag = "9f86c7cf68cf2315e85061a928be1891"
	require.Contains(t, diffListing(dst, other), "listing differs", "two ETags that differ still differ")
	other = dst
	other.Size = 6
	require.Contains(t, diffListing(src, other), "listing differs", "the size is still compared")

	same := objState{etag: "ac7938d40cfc2307e2bf325d28e7884e", digest: "0123456789abcdef", tags: map[string]string{}}
	require.Empty(t, diffState(same, same))
	moved := same
	moved.etag = "9f86c7cf68cf2315e85061a928be1891"
	require.Contains(t, diffState(same, moved), "ETag differs", "the object's own ETag is compared")
}

// TestListedTwice: zone-b listed the null version of a key twice (one
// written with versioning enabled over another: FACTS.md section 20); the
// verifier kept one entry per version id and so reported at most "not
// latest", or nothing. Now an entry listed twice is a difference itself.
func TestListedTwice(t *testing.T) {
	l := &listing{entries: map[string]objVersion{}}
	l.add(objVersion{Key: "k", VersionID: "V", Latest: true, ETag: "e", Size: 7})
	l.add(objVersion{Key: "k", VersionID: "null", Latest: false, ETag: "e1", Size: 8})
	require.Empty(t, twiceDiffs("b", "destination", l))
	l.add(objVersion{Key: "k", VersionID: "null", Latest: false, ETag: "e2", Size: 8})
	d := twiceDiffs("b", "destination", l)
	require.Len(t, d, 1)
	require.Equal(t, "b/k@null", d[0].Key)
	require.Contains(t, d[0].What, "listed more than once on the destination")
	require.Len(t, l.entries, 2)
}
