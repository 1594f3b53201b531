// Package engine runs durable, code-first workflows on the workflow storage.
//
// A workflow is a Go function declared with [Define]: it takes a typed input,
// returns a typed output, and does its work in steps. [Step] runs a function
// once per execution and journals its result in the step_executions table;
// when a node dies, another node resumes the workflow from the top, and every
// step that already completed returns its journaled result instead of running
// again. The [Engine] registers workflows, starts executions, and runs them:
// it recovers its own work at startup, heartbeats for the executions it owns,
// and claims those whose node stopped beating.
//
//	var order = engine.Define("order", "v1", processOrder) // func(*engine.Context, Order) (Receipt, error)
//	e := engine.New(store, engine.Config{NodeID: "node-1"})
//	_ = e.Register(order)
//	go e.Run(ctx)
//	h, _ := order.Start(ctx, e, Order{ID: 42})
//	receipt, err := h.Result(ctx) // a *WorkflowError unless it COMPLETED
//
// [Workflow.StartTx] starts an execution inside the app's own GORM
// transaction: it exists if and only if that transaction commits. [Dynamic]
// registers an untyped workflow, for tools; [Engine.Start], [Engine.Await],
// [Engine.Signal] and [Engine.Cancel] work on execution ids.
//
// # Writing workflows
//
// Between steps, a workflow must be deterministic: on replay it must call the
// same steps, with the same ids, in the same order. Anything that touches the
// outside world or reads the clock belongs in a step. Step ids are unique
// within an execution; in loops and in [Parallel] or [Map], build them from
// the index. Each branch of Parallel or Map gets a Context of its own, which
// it must use: the ids [AwaitSignal] numbers by call order carry the branch
// index there ("branch:2/signal:approve:1"), so a replay gives every branch
// its own signal whatever order the goroutines run in.
//
// A step's side effects are at least once: if its node dies after the effect
// and before the result is journaled, the step runs again (with the next
// attempt number) on the node that takes over. Pass the outside world an
// idempotency key, ctx.ExecutionID() + "/" + stepID.
//
// # Waiting
//
// [Sleep] journals its wake-up time, so a workflow resumed after a crash
// sleeps only what is left. A wait longer than Config.PollInterval (a Sleep,
// an AwaitSignal, a retry backoff) parks the execution: it is handed back to
// the database with what it waits for, its goroutine and slot are freed, and
// any node resumes it by replay when it is due. Sleep and AwaitSignal then
// return an error that the workflow must return, as any error of theirs. [AwaitSignal] consumes exactly one signal sent
// with [Engine.Signal] and journals it in the same transaction; on replay it
// returns the same payload without consuming another. [Engine.Cancel] wakes
// both.
//
// # Failures, retries, timeouts
//
// [WithRetry] retries a failing step with exponential backoff and jitter.
// When a step's last attempt fails, [Step] returns a [*StepError] built from
// the journal: the failure's text and, for each error declared with
// [WithErrors] that the failure matched (errors.Is), that declared error, so
// errors.Is(err, declared) holds. The first run returns the same value a
// replay rebuilds, so a workflow that branches on a step's error takes the
// same branch after a restart; an undeclared error keeps only its text.
//
// A step whose result the database cannot store (NaN, a NUL, invalid UTF-8)
// fails once, without a retry: its function succeeded, and running it again
// would repeat its effects. A workflow whose output cannot be stored ends
// FAILED, and error texts are stored with invalid bytes escaped. A
// workflow that returns an error ends FAILED with the error stored; one whose
// step keeps dying with its node ends FAILED after Config.MaxStepCrashes. A
// workflow defined [WithTimeout] ends TIMED_OUT after that long. A step
// failure wrapped in [NonRetryable] is not retried. Config.Clock and
// Config.InterceptStep let tests run waits on a fake clock and stub steps
// (see testutil/workflowtest).
//
// # Many nodes
//
// Any number of engines may share one PostgreSQL database (or one SQLite
// file on one machine). Each execution has one owner; a takeover bumps its
// version, and every checkpoint is conditional on still owning it, so a node
// that was paused and presumed dead gets [ErrOwnershipLost] and writes
// nothing more. A node heartbeats only the executions it runs: one it gives up
// on goes stale and another node takes it. Sweeps claim a fair share of the
// backlog (it divided by the live nodes). A graceful stop drains: running
// steps may finish for up to Config.DrainTimeout, what completed is journaled
// and the executions are handed back, so any node resumes them at once;
// a failed storage call stops a run without failing it, and the run resumes,
// after a growing pause, with the step results it could not write. With the
// default Config a dead node's work resumes elsewhere about ten seconds after
// it died.
package engine
