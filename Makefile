# Set WORKFLOW_TEST_POSTGRES_DSN to run the PostgreSQL half of the suites, e.g.
#   make test WORKFLOW_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
# Without it the PostgreSQL tests are skipped (WORKFLOW_REQUIRE_POSTGRES=1 fails them instead).
export WORKFLOW_TEST_POSTGRES_DSN
export WORKFLOW_REQUIRE_POSTGRES

GO ?= go
BENCH ?= .

.PHONY: build test vet bench crash restart-test demo

# The operator's CLI, in bin/ (or: go install github.com/plexspaces/workflow/cmd/workflowctl@latest).
build:
	$(GO) build -o bin/workflowctl ./cmd/workflowctl

# The scale tests skip themselves under -race (too slow there); the second
# pass runs them without it.
test: vet
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run '^TestPark_ManyWaitersHoldNothing$$' ./engine/

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count=1 ./repository/ ./engine/

# The full chaos test: 200 five-step workflows, a fault every 250 ms: SIGKILL, SIGTERM or (PostgreSQL) killed connections (set the DSN for PostgreSQL).
crash:
	WORKFLOW_CRASH_FULL=1 $(GO) test -count=1 -v -run '^TestCrash_' -timeout 30m ./engine/

# Restarts the local PostgreSQL server while 50 workflows run (alone: it disturbs every other test on the server).
restart-test:
	WORKFLOW_TEST_PG_RESTART="$$(ls /etc/postgresql | head -n 1) main" $(GO) test -count=1 -v -run '^TestEngine_PostgresServerRestart$$' ./engine/

# The order-processing demo on an embedded SQLite file (add DEMO_ARGS='-dsn postgres://...' for PostgreSQL).
demo:
	$(GO) run ./examples/order-processing $(DEMO_ARGS)
