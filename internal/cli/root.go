package cli

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// IO is where the command reads and writes.
type IO struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// app holds what every subcommand shares: the streams, the global flags
// and the environment. It is built anew by each Main call.
type app struct {
	io     IO
	getenv func(string) string

	asJSON        bool
	databaseURL   string
	defaultURL    string
	storeKind     string
	eventstoreURL string
	workDir       string
	logLevel      string
	// writes is set by commands that write, whose refusals say that
	// nothing was written.
	writes bool

	log         *slog.Logger
	logLevelSet bool
}

// quietLog is the logger of a command whose own output tells the story
// (demo): warnings only, unless --log-level was given.
func (a *app) quietLog() *slog.Logger {
	if a.logLevelSet {
		return a.log
	}
	return slog.New(slog.NewTextHandler(a.io.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Main runs the eventstream command with args (without the program name)
// and returns the process exit code.
func Main(ctx context.Context, args []string, stdio IO) int {
	a := &app{io: stdio, getenv: os.Getenv}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if ctx.Err() != nil && exitCode(err) == ExitFailure && isCanceled(err) {
		// Ctrl-C on a command that does not checkpoint: say so plainly.
		a.stderrf("interrupted\n")
		return ExitInterrupted
	}
	path := "eventstream"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	writeError(stdio.Err, err, a.asJSON, a.writes, path)
	return exitCode(err)
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "eventstream",
		Short: "A schema-validated event store on PostgreSQL: log, projections, server",
		Long: `eventstream keeps an append-only, schema-validated event log (PostgreSQL,
EventStoreDB or memory), runs projections into PostgreSQL read models, and
serves both over HTTP.

Start with:  eventstream demo

Connection: --database-url, else $DATABASE_URL, else
postgres://root@127.0.0.1:5432/eventstream?sslmode=disable (the database is
created if the server allows it). When no server answers there but the
PostgreSQL server programs are installed, "demo" and "serve --dev" start a
private cluster under ./.eventstream/pg.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return a.setup(cmd)
		},
	}
	asGroup(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	pf := root.PersistentFlags()
	pf.BoolVar(&a.asJSON, "json", false, "print JSON (one object per line for event lists) instead of tables")
	pf.StringVar(&a.databaseURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL, else "+defaultDatabaseURL+")")
	pf.StringVar(&a.storeKind, "store", "", "where the event log lives: postgres, esdb or memory (default $EVENTSTREAM_STORE, else postgres); read models are always in PostgreSQL")
	pf.StringVar(&a.eventstoreURL, "eventstore-url", "", "EventStoreDB connection string for --store esdb (default $EVENTSTORE_URL)")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	pf.StringVar(&a.defaultURL, "default-database-url", defaultDatabaseURL, "the URL tried when neither --database-url nor $DATABASE_URL is set")
	_ = pf.MarkHidden("default-database-url")
	pf.StringVar(&a.workDir, "work-dir", "", "folder that holds ./.eventstream (default: the current directory)")
	_ = pf.MarkHidden("work-dir")
	root.SetHelpTemplate(root.HelpTemplate())
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "{{if .HasHelpSubCommands}}",
		"\n"+exitCodesHelp+"\n{{if .HasHelpSubCommands}}", 1))

	root.AddCommand(
		a.migrateCommand(),
		a.demoCommand(),
		a.appendCommand(),
		a.readCommand(),
		a.tailCommand(),
		a.exportCommand(),
		a.importCommand(),
		a.schemasCommand(),
		a.projectionsCommand(),
		a.replayCommand(),
		a.backfillCommand(),
		a.dlqCommand(),
		a.serveCommand(),
		a.tokensCommand(),
		a.benchCommand(),
		a.tenantsCommand(),
	)
	return root
}

// setup runs before every subcommand: it resolves the logger and the
// environment defaults of the global flags.
func (a *app) setup(cmd *cobra.Command) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", a.logLevel)
	}
	a.log = slog.New(slog.NewTextHandler(a.io.Err, &slog.HandlerOptions{Level: level}))
	a.logLevelSet = flagChanged(cmd.Flags(), "log-level")
	if a.workDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		a.workDir = wd
	}
	return nil
}

// asGroup makes a command that only holds subcommands refuse unknown ones
// as a usage error and print its help when called alone.
func asGroup(c *cobra.Command) *cobra.Command {
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
		}
		return nil
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		cmd.SetOut(cmd.ErrOrStderr())
		_ = cmd.Help()
		return &silentError{code: ExitUsage}
	}
	return c
}

// argsExactly and friends wrap cobra's argument checks as usage errors.
func argsExactly(n int) cobra.PositionalArgs { return usageArgs(cobra.ExactArgs(n)) }
func argsMax(n int) cobra.PositionalArgs     { return usageArgs(cobra.MaximumNArgs(n)) }

func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &usageError{msg: err.Error()}
		}
		return nil
	}
}

func (a *app) stderrf(format string, args ...any) {
	_, _ = io.WriteString(a.io.Err, sprintf(format, args...))
}

func (a *app) stdoutf(format string, args ...any) {
	_, _ = io.WriteString(a.io.Out, sprintf(format, args...))
}

// flagChanged reports whether the user set the flag on the command line.
func flagChanged(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
