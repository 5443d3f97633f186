package labtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Root is found from this file's place in the tree: moved, it must follow.
func TestRootIsTheRepository(t *testing.T) {
	_, err := os.Stat(filepath.Join(Root(), "go.mod"))
	require.NoError(t, err, "Root() = %s", Root())
	_, err = os.Stat(filepath.Join(Root(), "deploy", "ceph-lab", "start.sh"))
	require.NoError(t, err)
}
