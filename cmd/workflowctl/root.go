package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// envDSN names the environment variable that gives the DSN when --dsn does not.
const envDSN = "WORKFLOW_DSN"

// manager is what the commands use of the management API; *manage.Client
// implements it, and tests may fake it.
type manager interface {
	List(ctx context.Context, f manage.Filter) (manage.Page, error)
	Get(ctx context.Context, id string) (*manage.Detail, error)
	Cancel(ctx context.Context, id string) error
	Signal(ctx context.Context, id, name string, payload any) error
	Retry(ctx context.Context, id string) (*models.WorkflowExecution, error)
	Purge(ctx context.Context, o manage.PurgeOptions) (manage.PurgeCounts, error)
	Nodes(ctx context.Context) ([]manage.NodeInfo, error)
	Stale(ctx context.Context, threshold time.Duration) ([]models.WorkflowExecution, error)
}

var _ manager = (*manage.Client)(nil)

// app is one run of the CLI: where it writes, what it reads of the
// environment, how it opens a database, and the global flags.
type app struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	// open opens the storage a DSN names; create lets a missing SQLite file
	// be created (migrate up). The returned func releases it.
	open func(ctx context.Context, dsn string, create bool) (*repository.Storage, func(), error)
	// manager wraps a storage in the management API.
	manager func(*repository.Storage) manager
	// isTerminal reports whether w is a terminal (for the progress bar).
	isTerminal func(w io.Writer) bool
	now        func() time.Time
	redactor   redactor

	dsn    string
	output outputFormat
}

// newApp returns an app that writes to stdout and stderr and reads the
// environment through lookupEnv.
func newApp(stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) *app {
	return &app{
		stdout:     stdout,
		stderr:     stderr,
		lookupEnv:  lookupEnv,
		open:       openStorage,
		manager:    func(s *repository.Storage) manager { return manage.New(s) },
		isTerminal: isTerminal,
		now:        time.Now,
		output:     outputTable,
	}
}

// execute runs the command line args and prints its error, if any, on stderr
// in one line with passwords masked. main maps the error to the exit status.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) error {
	return newApp(stdout, stderr, lookupEnv).execute(ctx, args)
}

func (a *app) execute(ctx context.Context, args []string) error {
	root := a.rootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		env, _ := a.lookupEnv(envDSN)
		a.redactor.add(env)
		a.redactor.add(a.dsn)
		msg := oneLine(a.redactor.redact(err.Error()))
		var usage *usageError
		if errors.As(err, &usage) {
			if cmd, _, findErr := root.Find(args); findErr == nil {
				msg += fmt.Sprintf(" (see %s --help)", cmd.CommandPath())
			}
		}
		fmt.Fprintln(a.stderr, "workflowctl: "+msg)
	}
	return err
}

// rootCommand builds the command tree.
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "workflowctl",
		Short: "Operate the durable workflows stored in a database",
		Long: "workflowctl lists, inspects, signals, cancels, retries and purges the workflow\n" +
			"executions in a database, lists the nodes running them, and migrates its schema.\n\n" +
			"The database is --dsn or $" + envDSN + ": sqlite://PATH or postgres://USER@HOST/DB.",
		Args:          groupArgs,
		RunE:          groupRun,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	flags := root.PersistentFlags()
	flags.StringVar(&a.dsn, "dsn", "", "database: sqlite://PATH, postgres://USER@HOST/DB (default $"+envDSN+")")
	flags.VarP(&a.output, "output", "o", "output format: table or json")
	root.AddCommand(
		a.listCommand(),
		a.showCommand(),
		a.signalCommand(),
		a.cancelCommand(),
		a.retryCommand(),
		a.purgeCommand(),
		a.nodesCommand(),
		a.staleCommand(),
		a.migrateCommand(),
	)
	return root
}

// groupArgs makes an unknown subcommand of a command group bad usage (cobra's
// own check returns a plain error).
func groupArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

// groupRun runs a command group without a subcommand: bad usage, naming
// the subcommands.
func groupRun(cmd *cobra.Command, _ []string) error {
	var names []string
	for _, sub := range cmd.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	return usagef("%s needs a command: %s", cmd.CommandPath(), strings.Join(names, ", "))
}

// exactArgs accepts exactly the named arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return rangeArgs(len(names), names...)
}

// rangeArgs accepts the first min of names and, optionally, the rest.
func rangeArgs(min int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return usagef("%s: missing %s", cmd.CommandPath(), strings.Join(names[len(args):min], " and "))
		case len(args) > len(names):
			return usagef("%s: unexpected argument %q", cmd.CommandPath(), args[len(names)])
		}
		for i, arg := range args {
			if strings.TrimSpace(arg) == "" {
				return usagef("%s: empty %s", cmd.CommandPath(), names[i])
			}
		}
		return nil
	}
}

// storage opens the database of --dsn or $WORKFLOW_DSN and returns it with
// its release function.
func (a *app) storage(ctx context.Context, create bool) (*repository.Storage, func(), error) {
	env, _ := a.lookupEnv(envDSN)
	dsn := a.dsn
	if dsn == "" {
		dsn = env
	}
	if dsn == "" {
		return nil, nil, usagef("no database: give --dsn or set %s", envDSN)
	}
	return a.open(ctx, dsn, create)
}

// withManager runs fn with the management API on the database.
func (a *app) withManager(ctx context.Context, fn func(m manager) error) error {
	store, release, err := a.storage(ctx, false)
	if err != nil {
		return err
	}
	defer release()
	return fn(a.manager(store))
}

// openStorage opens dsn without migrating it: an operator's command never
// changes the schema unless it is migrate. A SQLite file that does not
// exist is an error unless create is set, rather than an empty new database.
func openStorage(ctx context.Context, dsn string, create bool) (*repository.Storage, func(), error) {
	if path, ok := strings.CutPrefix(dsn, "sqlite://"); ok && !create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("database file %s does not exist", path)
		}
	}
	store, err := repository.Open(ctx, dsn, repository.WithoutMigrations(), repository.WithMaxOpenConns(2))
	if err != nil {
		return nil, nil, fmt.Errorf("opening the database: %w", err)
	}
	return store, func() { _ = store.Close() }, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
