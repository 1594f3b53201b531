package repository_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// badCalls are calls with bad input; each must fail with ErrInvalidArgument
// before any SQL runs.
func badCalls(ctx context.Context, s *repository.Storage) map[string]error {
	good := repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1"}
	with := func(f func(*repository.NewExecution)) repository.NewExecution { in := good; f(&in); return in }
	create := func(in repository.NewExecution) error { _, err := s.CreateExecution(ctx, in); return err }
	v0 := int64(0)
	_, getErr := s.GetExecution(ctx, "")
	_, staleErr := s.ListStaleExecutions(ctx, -time.Second, nil)
	_, staleStatusErr := s.ListStaleExecutions(ctx, time.Second, []models.ExecutionStatus{"ZOMBIE"})
	_, byStatusErr := s.ListExecutionsByStatus(ctx, []models.ExecutionStatus{"running"}, nil)
	_, listLimitErr := s.ListExecutions(ctx, repository.ExecutionFilter{Limit: -1})
	_, listHugeErr := s.ListExecutions(ctx, repository.ExecutionFilter{Limit: repository.ListLimitMax + 1})
	_, listLabelErr := s.ListExecutions(ctx, repository.ExecutionFilter{Labels: map[string]string{"": "x"}})
	_, stepAttemptErr := s.CreateStepExecution(ctx, "e", "s", nil, 0)
	_, stepInputErr := s.CreateStepExecution(ctx, "e", "s", []byte("{oops"), 1)
	_, _, checkErr := s.CheckSignal(ctx, "e", "")
	_, _, consumeErr := s.ConsumeSignal(ctx, "", "n")
	_, defErr := s.GetDefinition(ctx, "d", " ")
	_, prefixErr := s.ListDefinitions(ctx, "\xff")
	return map[string]error{
		"create: empty definition id":   create(with(func(in *repository.NewExecution) { in.DefinitionID = "" })),
		"create: blank definition ver":  create(with(func(in *repository.NewExecution) { in.DefinitionVersion = "  " })),
		"create: invalid JSON bytes":    create(with(func(in *repository.NewExecution) { in.Input = []byte(`{"a":`) })),
		"create: unencodable input":     create(with(func(in *repository.NewExecution) { in.Input = make(chan int) })),
		"create: empty label key":       create(with(func(in *repository.NewExecution) { in.Labels = map[string]string{"": "v"} })),
		"create: NUL in label value":    create(with(func(in *repository.NewExecution) { in.Labels = map[string]string{"k": "a\x00b"} })),
		"create: overlong id":           create(with(func(in *repository.NewExecution) { in.ExecutionID = strings.Repeat("x", 256) })),
		"create: invalid UTF-8 node":    create(with(func(in *repository.NewExecution) { in.NodeID = "\xc3\x28" })),
		"get: empty id":                 getErr,
		"status: unknown":               s.UpdateExecutionStatus(ctx, "e", "DONE"),
		"status: lower case":            s.UpdateExecutionStatus(ctx, "e", "running"),
		"status: version 0":             s.UpdateExecutionStatusWithVersion(ctx, "e", models.ExecutionRunning, &v0),
		"output: invalid JSON":          s.UpdateExecutionOutput(ctx, "e", models.JSON("nope"), nil),
		"heartbeat: empty node":         s.UpdateHeartbeat(ctx, "e", ""),
		"transfer: empty owner":         s.TransferOwnership(ctx, "e", "", 1),
		"transfer: version 0":           s.TransferOwnership(ctx, "e", "n", 0),
		"stale: negative threshold":     staleErr,
		"stale: unknown status":         staleStatusErr,
		"by status: unknown status":     byStatusErr,
		"list: negative limit":          listLimitErr,
		"list: limit over max":          listHugeErr,
		"list: empty label key":         listLabelErr,
		"step: attempt 0":               stepAttemptErr,
		"step: invalid JSON":            stepInputErr,
		"step: complete unknown status": s.CompleteStepExecution(ctx, "s", "DONE", nil, ""),
		"signal: empty name":            s.SendSignal(ctx, "e", "", nil),
		"signal: check empty name":      checkErr,
		"signal: consume empty id":      consumeErr,
		"definition: nil":               s.SaveDefinition(ctx, nil),
		"definition: empty name":        s.SaveDefinition(ctx, &models.WorkflowDefinition{ID: "d", Version: "1"}),
		"definition: invalid spec":      s.SaveDefinition(ctx, &models.WorkflowDefinition{ID: "d", Version: "1", Name: "n", Spec: models.JSON("{")}),
		"definition: blank version":     defErr,
		"definition: invalid prefix":    prefixErr,
		"definition: delete empty id":   s.DeleteDefinition(ctx, "", ""),
	}
}

func TestValidation_NoSQLRuns(t *testing.T) {
	t.Parallel()
	s, _ := testutil.NewMockStorage(t) // no expectations: any SQL fails the test
	for name, err := range badCalls(t.Context(), s) {
		require.ErrorIs(t, err, repository.ErrInvalidArgument, name)
	}
}

func TestValidation_EveryDialect(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		for name, err := range badCalls(t.Context(), s) {
			require.ErrorIs(t, err, repository.ErrInvalidArgument, name)
		}
		var n int64
		require.NoError(t, s.DB().Model(&models.WorkflowExecution{}).Count(&n).Error)
		require.Zero(t, n, "nothing half-written")
	})
}

func TestValidation_DSN(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, dsn := range []string{
		"", "mysql://root:hunter2@localhost/db", "sqlite://", "sqlite://wf.db?_pragma=x",
		"postgres://user:hunter2@host:notaport/db", "postgres://user:hunter2@[::1/db", "redis://:hunter2@x",
	} {
		_, err := repository.Open(ctx, dsn)
		require.ErrorIs(t, err, repository.ErrInvalidArgument, dsn)
		require.NotContains(t, err.Error(), "hunter2", "a DSN error never echoes a password")
		require.Contains(t, err.Error(), "sqlite://PATH", "the message names the accepted forms")
	}
	_, err := repository.NewSQLite(ctx, "postgres://x")
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
	_, err = repository.NewPostgres(ctx, "sqlite://x")
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
	_, err = repository.NewInMemory(ctx, repository.WithMaxOpenConns(0))
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
}

func TestOpen_Forms(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	for _, dsn := range []string{"sqlite::memory:", "sqlite://" + dir + "/a.db"} {
		s, err := repository.Open(ctx, dsn)
		require.NoError(t, err, dsn)
		require.Equal(t, "sqlite", s.Dialect())
		seedDefinition(t, s, "order", "v1")
		require.NoError(t, s.Close())
	}
	// A file database keeps its rows across opens; migrating again is a no-op.
	s, err := repository.NewSQLite(ctx, dir+"/a.db")
	require.NoError(t, err)
	_, err = s.GetDefinition(ctx, "order", "v1")
	require.NoError(t, err)
	require.NoError(t, s.Close())

	dsn := testutil.PostgresSchemaDSN(t)
	for _, form := range []string{dsn, strings.Replace(dsn, "postgres://", "postgresql://", 1)} {
		s, err := repository.Open(ctx, form)
		require.NoError(t, err)
		require.Equal(t, "postgres", s.Dialect())
		require.NoError(t, s.Close())
	}
}

// TestMarshalJSON_RefusesInvalidUTF8InStrings: encoding/json would store
// U+FFFD in place of each bad byte, another value than the caller's.
func TestMarshalJSON_RefusesInvalidUTF8InStrings(t *testing.T) {
	t.Parallel()
	type inner struct{ Name string }
	type outer struct {
		Inner  inner
		Tags   []string
		ByKey  map[string]int
		hidden string
	}
	for name, v := range map[string]any{
		"string":       "caf\xe9",
		"nested field": outer{Inner: inner{Name: "\xff"}},
		"slice":        []string{"ok", "bad\xc3"},
		"map key":      map[string]int{"k\xfe": 1},
		"map value":    map[string]any{"k": []any{"\x80"}},
		"pointer":      &inner{Name: "a\xffb"},
	} {
		_, err := repository.MarshalJSON("value", v)
		require.ErrorIs(t, err, repository.ErrInvalidArgument, name)
		_, err = repository.EncodeJSON("value", v)
		require.ErrorIs(t, err, repository.ErrInvalidArgument, name)
	}
	for name, v := range map[string]any{
		"a real U+FFFD":        "\ufffd",
		"the escape as text":   `\ufffd`,
		"bytes are base64":     []byte("\xff\xfe"),
		"unexported is unseen": outer{hidden: "\xff", Inner: inner{Name: "\ufffd"}},
	} {
		raw, err := repository.MarshalJSON("value", v)
		require.NoError(t, err, name)
		require.True(t, json.Valid(raw), name)
	}
}
