package optimisticlock_test

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// postgresDSN returns a DSN on a schema of the test's own, or "" (skipping the
// PostgreSQL half) when WORKFLOW_TEST_POSTGRES_DSN is unset. The plugin imports
// nothing of this module, so neither do its tests.
func postgresDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("WORKFLOW_TEST_POSTGRES_DSN")
	if dsn == "" {
		if os.Getenv("WORKFLOW_REQUIRE_POSTGRES") == "1" {
			t.Fatal("WORKFLOW_TEST_POSTGRES_DSN is not set but WORKFLOW_REQUIRE_POSTGRES=1")
		}
		return ""
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "olock_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		_ = admin.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
