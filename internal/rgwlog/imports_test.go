package rgwlog

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The log model is vocabulary: it depends on no package of rgwsync (not the
// wire format, not the bound store), so both services and the store can use
// it without the model changing with them.
func TestImportsNoRgwsyncPackage(t *testing.T) {
	names, err := os.ReadDir(".")
	require.NoError(t, err)
	fset := token.NewFileSet()
	for _, n := range names {
		if !strings.HasSuffix(n.Name(), ".go") || strings.HasSuffix(n.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n.Name(), nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			require.False(t, strings.HasPrefix(path, "github.com/rgwsync/"), "%s imports %s", n.Name(), path)
		}
	}
}

func TestParseLog(t *testing.T) {
	for l := LogMetadata; l <= LogBucketIndex; l++ {
		got, err := ParseLog(l.String())
		require.NoError(t, err)
		require.Equal(t, l, got)
	}
	_, err := ParseLog("datalog")
	require.ErrorContains(t, err, `unknown log "datalog"`)
	require.Equal(t, "unknown", Log(0).String())
}
