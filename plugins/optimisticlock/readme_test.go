package optimisticlock_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readmeHeading is the README section whose sample is example_test.go.
const readmeHeading = "## Optimistic locking for your own models"

// TestReadmeSampleIsTheExample keeps the README's sample and the checked
// Example the same code: the README's block is example_test.go after its
// imports, byte for byte.
func TestReadmeSampleIsTheExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	code, err := os.ReadFile("example_test.go")
	require.NoError(t, err)

	_, section, ok := strings.Cut(string(readme), readmeHeading+"\n")
	require.True(t, ok, "the README has %q", readmeHeading)
	_, block, ok := strings.Cut(section, "```go\n")
	require.True(t, ok, "%s has a Go block", readmeHeading)
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	_, body, ok := strings.Cut(string(code), "\n)\n")
	require.True(t, ok, "example_test.go has an import block")
	require.Equal(t, strings.TrimSpace(body), strings.TrimSpace(block), "README sample differs from example_test.go")
}
