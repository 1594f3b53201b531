package repository_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadmeStorageExampleIsTheExample keeps the README's storage sample and
// the checked Example in example_test.go the same code.
func TestReadmeStorageExampleIsTheExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	example, err := os.ReadFile("example_test.go")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "## The storage on its own")
	require.True(t, ok, "the README shows the storage on its own")
	_, block, ok := strings.Cut(section, "```go\n")
	require.True(t, ok)
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(strings.SplitN(line, " // RUNNING node-2", 2)[0])
		if line == "" {
			continue
		}
		require.Contains(t, string(example), line, "README storage sample line not in example_test.go")
	}
}
