package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/bench"
)

// benchCommand is `eventstream bench`: the load generator of package
// bench, with the raw PostgreSQL ceiling measured in the same run.
func (a *app) benchCommand() *cobra.Command {
	var (
		scenario, mix, htmlFile, mdFile string
		cfg                             bench.Config
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test the event store beside the raw PostgreSQL ceiling, in the same run",
		Long: `Run load scenarios against PostgreSQL, each in a fresh schema that is dropped
afterwards (unless --keep). Every scenario also runs its raw equivalent with
plain pgx on a bare table of the same rows, and reports ours / raw as the
ratio: absolute figures vary between machines, the ratio is what to track.
Before reporting, the bench checks that every event it says it appended is
in the log exactly once, and fails (exit 1) if not.

Scenarios (--scenario NAME[,NAME...] or all):
` + bench.ScenarioHelp() + `
Flags left unset take the scenario's preset. --duration and --events bound
what each side (ours, raw) does in all: single, batch, hot and read share
them among their alternating rounds (--rounds); project runs each side once.
read takes --duration only (whole passes; preset 3s), replay neither (it
rebuilds --log-events events). Every scenario's flags are checked before
the first one runs.

A flag given a value it cannot take is refused (exit 2), 0 included: 0
means something only where the flag's help says so (--streams, --event-size,
--rounds, --committers, --linger, --seed); hot, which needs shared streams,
refuses --streams 0.

Some flags only some scenarios take; the others refuse them (exit 2)
instead of ignoring them:
  --duration                    single, batch, hot, project, read
  --events                      single, batch, hot, project
  --streams, --exact-versions   single, batch, hot, project
  --rate                        project
  --log-events                  replay, read
  --stream-events               read
  --rounds (more than 1)        single, batch, hot, read
Every scenario takes the other flags (replay and read use --writers,
--events-per-append, --types, --event-size and --random-ids to load their
log). With a list of scenarios, a flag one of them does not take stops the
whole run before anything runs. With every scenario (--scenario all, the
default) a flag goes to the scenarios that take it, and the log says which
ran without it: --duration 30s sets the duration of every scenario but
replay.

Event types (--types): domain (every type of the domain, weighted as it
produces them; the default), uniform, or type[=weight],... with "prefix.*"
for every type under a prefix.`,
		Example: `  eventstream bench --scenario single
  eventstream bench --scenario batch,hot --duration 30s --html report.html
  eventstream bench --scenario all --json > bench.json`,
		Args: argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := scenarioList(scenario)
			if err != nil {
				return err
			}
			if cfg.Mix, err = bench.ParseMix(mix); err != nil {
				return usagef("--types: %v", err)
			}
			// With every scenario (all), a setting goes to the scenarios
			// that take it; one named on purpose is refused a setting it
			// would not use.
			every := scenario == "" || scenario == "all"
			configFor := func(name string) (bench.Config, []string) {
				c := cfg
				c.Scenario = name
				if !every {
					return c, nil
				}
				return bench.WithoutUntaken(c)
			}
			// Refuse up front: a refusal after the first scenarios ran
			// would lose their reports. The flags given are checked with
			// the flag set at hand: in a Config, a 0 given looks like a 0
			// left unset, which bench.Run fills from the preset.
			if htmlFile != "" && htmlFile == mdFile || sameFile(htmlFile, mdFile) {
				return usagef("--html and --markdown name the same file (%s, %s): give each its own", htmlFile, mdFile)
			}
			given := cmd.Flags().Changed
			if err := bench.CheckGiven(cfg, given); err != nil {
				return usagef("%v", err)
			}
			for _, name := range names {
				c, _ := configFor(name)
				g := cfg
				g.Scenario = name
				err := bench.CheckGiven(g, given)
				if err == nil {
					err = bench.Check(c)
				}
				if err != nil {
					if len(names) > 1 {
						return usagef("scenario %s: %v", name, err)
					}
					return usagef("%v", err)
				}
			}
			db, err := a.openDB(cmd.Context(), connectOptions{appName: "eventstream-bench"})
			if err != nil {
				return err
			}
			// The bench opens its own pools on a schema of its own.
			cfg.DatabaseURL = db.URL
			db.Close()
			cfg.Logger = a.log
			var reports []bench.Report
			var runErr error
			for _, name := range names {
				c, dropped := configFor(name)
				if len(dropped) > 0 {
					a.log.Info("scenario "+name+" runs without settings it does not take", "dropped", strings.Join(dropped, " "))
				}
				rep, err := bench.Run(cmd.Context(), c)
				if err != nil {
					if errors.Is(err, bench.ErrConfig) {
						runErr = usagef("bench %s: %v", name, err)
					} else {
						runErr = fmt.Errorf("bench %s: %w", name, err)
					}
					break
				}
				reports = append(reports, rep)
			}
			if err := a.writeBenchReports(reports, htmlFile, mdFile); err != nil {
				return err
			}
			if runErr != nil && errors.Is(runErr, bench.ErrVerify) {
				return fmt.Errorf("%w\nthe figures of this run are not to be trusted", runErr)
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&scenario, "scenario", "all", "scenario(s) to run: "+strings.Join(bench.ScenarioNames(), ", ")+", or all")
	f.DurationVar(&cfg.Duration, "duration", 0, "single, batch, hot, project, read: how long each side (ours, raw) writes or reads, rounds together (preset 10s; read 3s)")
	f.IntVar(&cfg.Events, "events", 0, "single, batch, hot, project: events each side (ours, raw) writes, rounds together, instead of a duration")
	f.IntVar(&cfg.Writers, "writers", 0, "concurrent writers (goroutines; connections in the raw phase); replay, read: the writers that load the log")
	f.IntVar(&cfg.EventsPerAppend, "events-per-append", 0, "events per append (1: single-event appends); replay, read: of the appends that load the log")
	f.IntVar(&cfg.Streams, "streams", 0, "single, batch, hot, project: streams the appends share (0: a new stream per append, which hot refuses; 1: one hot stream)")
	f.BoolVar(&cfg.ExactVersions, "exact-versions", false, "single, batch, hot, project: append with exact expected versions and retry conflicts (needs --streams)")
	f.IntVar(&cfg.EventSize, "event-size", 0, "wanted payload size in bytes (0: each type's natural size)")
	f.BoolVar(&cfg.RandomIDs, "random-ids", false, "random (v4) event ids instead of time-ordered (v7) ones like the domain's")
	f.StringVar(&mix, "types", "domain", "event type mix: domain, uniform, or type[=weight],...")
	f.IntVar(&cfg.Rate, "rate", 0, "project: fixed append rate in events/s (preset 10000)")
	f.IntVar(&cfg.LogEvents, "log-events", 0, "replay, read: events loaded into the log first (preset 200000)")
	f.IntVar(&cfg.StreamEvents, "stream-events", 0, "read: events in the long stream (preset 20000)")
	f.IntVar(&cfg.Rounds, "rounds", 0, "single, batch, hot, read: alternate ours and raw in this many rounds, at most 100 (0: the preset, 5, read 3; 1: ours, then raw); project and replay refuse more than 1")
	f.IntVar(&cfg.StoreOptions.Committers, "committers", 0, "our store's group-commit transactions in flight at once (0: the store's default)")
	f.DurationVar(&cfg.StoreOptions.Linger, "linger", 0, "how long our store's committer waits for the writers of its last group (0: the store's default, 1ms; negative: never)")
	f.Int64Var(&cfg.Seed, "seed", 0, "seed of the generated events (0: 1)")
	f.BoolVar(&cfg.Keep, "keep", false, "keep each run's schema (its name is in the report)")
	f.BoolVar(&cfg.SkipRaw, "no-raw", false, "skip the raw ceiling (no ratio)")
	f.StringVar(&htmlFile, "html", "", "also write a self-contained HTML report with charts to this file (/dev/stdout: the report alone goes to stdout)")
	f.StringVar(&mdFile, "markdown", "", "also write the table as Markdown to this file (/dev/stdout: the report alone goes to stdout)")
	f.DurationVar(&cfg.SampleWaits, "sample-waits", 0, "sample what the server's backends wait on (CPU, WAL flush, the append lock, the client) every this long, 1ms to 1s (0: off)")
	f.StringVar(&cfg.ProfileDir, "profile-dir", "", "write a CPU profile of each phase into this folder (<scenario>-<side>[-r<round>].cpu.pprof; made if missing)")
	return cmd
}

func scenarioList(s string) ([]string, error) {
	if s == "" || s == "all" {
		return bench.ScenarioNames(), nil
	}
	var out []string
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(bench.ScenarioNames(), name) {
			return nil, usagef("--scenario %q: want %s, or all", name, strings.Join(bench.ScenarioNames(), ", "))
		}
		out = append(out, name)
	}
	return out, nil
}

func (a *app) writeBenchReports(reports []bench.Report, htmlFile, mdFile string) error {
	outs := []struct {
		file  string
		write func(io.Writer) error
	}{
		{htmlFile, func(w io.Writer) error { return bench.WriteHTML(w, reports) }},
		{mdFile, func(w io.Writer) error { return bench.WriteMarkdown(w, reports) }},
	}
	// A report whose file is where stdout goes (--html /dev/stdout, to a
	// pipe or redirected to a file) is the output: written through stdout
	// as the shell opened it, without the table or JSON before it.
	// Opened again (O_TRUNC), it emptied the file stdout was redirected to,
	// the table with it, and >> FILE lost what FILE held.
	toStdout := ""
	for _, out := range outs {
		if out.file == "" || len(reports) == 0 {
			continue
		}
		if fi, err := os.Stat(out.file); err == nil && a.stdoutIs(fi) {
			toStdout = out.file // one at most: refused up front
		}
	}
	switch {
	case toStdout != "":
	case a.asJSON:
		if err := bench.WriteJSON(a.io.Out, reports); err != nil {
			return err
		}
	default:
		if err := bench.WriteTable(a.io.Out, reports); err != nil {
			return err
		}
	}
	for _, out := range outs {
		if out.file == "" || len(reports) == 0 {
			continue
		}
		if out.file == toStdout {
			if err := out.write(a.io.Out); err != nil {
				return fmt.Errorf("write %s: %w", out.file, err)
			}
			continue
		}
		f, err := os.Create(out.file)
		if err != nil {
			return fmt.Errorf("write the report: %w", err)
		}
		if err := out.write(f); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", out.file, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write %s: %w", out.file, err)
		}
		a.log.Info("report written", "file", out.file, "at", time.Now().Format(time.TimeOnly))
	}
	return nil
}

// sameFile says whether two paths, both given and both existing, name the
// same file.
func sameFile(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}
