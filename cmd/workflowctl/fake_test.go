package main

import (
	"context"
	"time"

	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
)

// fakeManager answers every call with err, or with nothing (Get with detail).
type fakeManager struct {
	err    error
	detail *manage.Detail
}

var _ manager = (*fakeManager)(nil)

func (f *fakeManager) List(context.Context, manage.Filter) (manage.Page, error) {
	return manage.Page{}, f.err
}

func (f *fakeManager) Get(context.Context, string) (*manage.Detail, error) {
	return f.detail, f.err
}

func (f *fakeManager) Cancel(context.Context, string) error { return f.err }

func (f *fakeManager) Signal(context.Context, string, string, any) error { return f.err }

func (f *fakeManager) Retry(context.Context, string) (*models.WorkflowExecution, error) {
	return nil, f.err
}

func (f *fakeManager) Purge(context.Context, manage.PurgeOptions) (manage.PurgeCounts, error) {
	return manage.PurgeCounts{}, f.err
}

func (f *fakeManager) Nodes(context.Context) ([]manage.NodeInfo, error) { return nil, f.err }

func (f *fakeManager) Stale(context.Context, time.Duration) ([]models.WorkflowExecution, error) {
	return nil, f.err
}
