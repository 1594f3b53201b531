package engine_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadmeSamplesAreTheExamples keeps the README's code samples and the
// checked Examples they are copied from the same code.
func TestReadmeSamplesAreTheExamples(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	for heading, example := range map[string]string{
		"## Quick start":             "example_test.go",
		"## In your GORM app":        "example_gorm_test.go",
		"### Testing your workflows": "../testutil/workflowtest/readme_test.go ../testutil/workflowtest/example_test.go",
		"## The storage on its own":  "../repository/example_test.go",
	} {
		var code []byte
		for _, file := range strings.Fields(example) { // a sample may span files
			part, err := os.ReadFile(file)
			require.NoError(t, err)
			code = append(code, part...)
		}
		_, section, ok := strings.Cut(string(readme), heading)
		require.True(t, ok, "the README has %q", heading)
		_, block, ok := strings.Cut(section, "```go\n")
		require.True(t, ok)
		block, _, ok = strings.Cut(block, "```")
		require.True(t, ok)
		for _, line := range strings.Split(block, "\n") {
			// The README states an Example's output in a comment the file has
			// as an // Output: line.
			line = strings.TrimSpace(strings.SplitN(line, " // RUNNING node-2", 2)[0])
			if line != "" {
				require.Contains(t, string(code), line, "%s: README line not in %s", heading, example)
			}
		}
	}
}
