package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
)

// Config describes one scenario run. Run fills every zero field from the
// scenario's preset, so a caller (the CLI) sets only what the user gave;
// a zero the user gave looks the same, and a caller that can tell checks
// it with CheckGiven first.
type Config struct {
	// Scenario is the preset to run: single, batch, hot, project, replay
	// or read (see Scenarios).
	Scenario string
	// DatabaseURL is the server to run against. Run creates a fresh schema
	// on it and drops it at the end. Empty: $DATABASE_URL, else the local
	// default (postgres://root@127.0.0.1:5432/test?sslmode=disable).
	DatabaseURL string

	// Duration is how long each side (ours, raw) writes, or in read
	// reads, in all: single, batch, hot and read share it among their
	// rounds (see Rounds). Events bounds each side by event count instead
	// (single, batch, hot and project; read takes Duration only, 3s when
	// zero). When both are zero the preset decides; when both are set,
	// whichever comes first ends it. replay uses neither: it rebuilds
	// LogEvents events.
	//
	// A scenario given a setting it does not use (here and below: Events
	// in read, Duration or Events in replay, Streams or ExactVersions in
	// replay and read, Rate outside project, LogEvents outside replay and
	// read, StreamEvents outside read) refuses it (ErrConfig) instead of
	// ignoring it, so that nobody believes it changed the run.
	Duration time.Duration
	Events   int

	// Writers is the number of concurrent appending goroutines (each with
	// its own connection in the raw phase).
	Writers int
	// EventsPerAppend is the size of each append (1: single events).
	EventsPerAppend int
	// Streams is how many streams the appends go to; 0 (or a negative
	// value) gives each append a new stream. single, batch, hot and
	// project only: replay and read load their log with a new stream per
	// append (and read's long stream).
	Streams int
	// ExactVersions makes every append carry the exact expected version
	// of its stream; a conflict is retried with the stream's actual
	// version (hot). Otherwise appends to new streams use NoStream and
	// appends to shared streams use Any. single, batch, hot and project
	// only, like Streams.
	ExactVersions bool
	// EventSize is the wanted payload size in bytes (0: the natural size
	// of each type). Types whose schema bounds their fields stay smaller;
	// the report gives the mean size written.
	EventSize int
	// Mix is the event types written and their weights (nil: DomainMix).
	Mix Mix
	// RandomIDs draws event ids at random (UUID version 4) instead of
	// time-ordered (version 7, as the aggregates and the store make them).
	// Random ids land on random pages of the log's id index, which costs
	// PostgreSQL more per event; the raw table has no index to notice.
	RandomIDs bool

	// Rate is the fixed append rate of project, in events per second
	// (project only).
	Rate int
	// LogEvents is how many events replay and read load into the log
	// before they measure (replay and read only).
	LogEvents int
	// StreamEvents is the length of the long stream that read reads
	// (read only).
	StreamEvents int

	// Rounds splits single, batch, hot and read into this many alternating
	// rounds of ours then raw (the duration or event count shared among
	// them), so that on a shared machine both sides meet the same
	// background load. 0: the preset (5; read 3); 1: ours, then raw.
	// project and replay always run ours, then raw: they refuse more
	// than 1.
	Rounds int

	// SkipRaw leaves out the raw PostgreSQL ceiling (not recommended: the
	// ratio is the figure to track).
	SkipRaw bool
	// Keep leaves the run's schema in place for inspection.
	Keep bool
	// Seed makes the generated events reproducible (0: 1).
	Seed int64
	// StoreOptions tune our store (zero: the defaults).
	StoreOptions postgres.Options
	// ProfileDir, when set, receives a CPU profile of the bench process for
	// each phase: <scenario>-<side>.cpu.pprof, <scenario>-<side>-r<N>.cpu.pprof
	// with rounds (go tool pprof reads them). Run makes the folder (and its
	// parents) when it does not exist.
	ProfileDir string
	// SampleWaits, when set, samples every SampleWaits what the backends
	// serving each phase are doing (pg_stat_activity's wait events, and who
	// holds the append lock): Phase.Waits. The sampler's own queries cost
	// the server a little CPU, so figures taken with it are a little lower;
	// 0 (the default) samples nothing. 1ms to 1s.
	SampleWaits time.Duration
	// Logger receives progress messages (nil: discard).
	Logger *slog.Logger

	// hooks for tests: run after our phase, before verification.
	beforeVerify func(ctx context.Context, pool *pgxpool.Pool) error
	// beforePhase runs as a measured phase (side: "ours", "raw-r1", ...)
	// is about to start its clock, with the pool it is metered on.
	beforePhase func(side string, pool *pgxpool.Pool)
	// beforeReadCheck runs in read after the timed rounds, before the log
	// is checked through the store's read path.
	beforeReadCheck func(ctx context.Context, pool *pgxpool.Pool) error
	// readChecked runs as read's check through the store's read path
	// takes a page of n events, with the side of the timed phase open at
	// that moment ("" when none is).
	readChecked func(window string, n int)
}

// Scenario describes a named preset.
type Scenario struct {
	Name        string
	Description string
	preset      Config
}

var scenarios = []Scenario{
	{"single", "single-event appends from 64 writers, each to a new stream; raw: one INSERT per transaction, 64 connections",
		Config{Duration: 10 * time.Second, Writers: 64, EventsPerAppend: 1, Rounds: 5}},
	{"batch", "100-event appends from 4 writers, each to a new stream; raw: one COPY per batch, 4 connections",
		Config{Duration: 10 * time.Second, Writers: 4, EventsPerAppend: 100, Rounds: 5}},
	{"hot", "16 writers appending to the same 10 streams with exact expected versions, conflicts retried; raw: one INSERT per transaction, no version check",
		Config{Duration: 10 * time.Second, Writers: 16, EventsPerAppend: 1, Streams: 10, ExactVersions: true, Rounds: 5}},
	{"project", "single-event appends at a fixed rate (256 writers, so that slow appends do not lower the offered rate) while the audit projection runs live; reports projection lag; raw: same rate into a bare table (at most 64 connections) and a bare copying consumer",
		Config{Duration: 10 * time.Second, Writers: 256, EventsPerAppend: 1, Rate: 10_000}},
	{"replay", "rebuilds the audit projection over LogEvents events already in the log; raw: page through a bare table and COPY into a bare read-model table",
		Config{LogEvents: 200_000, Writers: 4, EventsPerAppend: 100}},
	{"read", "reads the whole log in pages and one long stream, ours and raw alternating; raw: the same keyset-paged SELECTs on a bare table with the same indexes",
		Config{LogEvents: 200_000, StreamEvents: 20_000, Writers: 4, EventsPerAppend: 100, Rounds: 3}},
}

// Scenarios returns the presets in the order `eventstream bench --scenario
// all` runs them.
func Scenarios() []Scenario { return append([]Scenario(nil), scenarios...) }

// ScenarioNames returns the preset names in run order.
func ScenarioNames() []string {
	out := make([]string, len(scenarios))
	for i, s := range scenarios {
		out[i] = s.Name
	}
	return out
}

// Preset returns the configuration of a named scenario.
func Preset(name string) (Config, error) {
	for _, s := range scenarios {
		if s.Name == name {
			c := s.preset
			c.Scenario = name
			return c, nil
		}
	}
	return Config{}, fmt.Errorf("bench: unknown scenario %q (known: %s)", name, strings.Join(ScenarioNames(), ", "))
}

// ErrConfig marks a configuration Run refuses.
var ErrConfig = errors.New("bench: invalid configuration")

// Check returns the error (ErrConfig) Run would refuse cfg with, without
// touching the database, or nil. A caller that runs several scenarios
// checks them all first, so that a refusal does not come after others
// already ran.
func Check(cfg Config) error {
	_, err := cfg.resolve()
	return err
}

// The bounds of the settings that have one.
const (
	maxWriters   = 512
	maxRounds    = 100
	maxEventSize = eventstore.MaxEventBytes / 2
)

// CheckGiven returns the error (ErrConfig) for a setting given outside
// its range, naming its flag and what it wants, or nil. given reports
// whether the caller was given a flag (its name without dashes:
// "writers"), as the CLI's flag set does. A Config cannot tell a zero that
// was given from one left unset, and Run fills both from the preset: a
// caller that can tell asks here first, so that `--writers 0` is refused
// instead of running the preset's writers.
//
// Zero is refused where it means nothing (--duration, --events,
// --writers, --events-per-append, --rate, --log-events, --stream-events)
// and kept where it is documented: --streams 0 is a new stream per append
// (refused by a scenario whose preset shares streams, hot, which needs
// them), --event-size 0 each type's natural size, --rounds 0 the preset,
// --committers 0 and --linger 0 the store's defaults, --seed 0 seed 1.
// A negative --streams is refused everywhere: Run reads it as 0, which
// nobody means by -1.
// With no Scenario, only what holds for every scenario is checked.
func CheckGiven(c Config, given func(flag string) bool) error {
	// First, so that hot is told what it needs rather than what the
	// others take.
	p, err := Preset(c.Scenario)
	if err == nil && given("streams") && c.Streams <= 0 && p.Streams > 0 {
		return fmt.Errorf("%w: --streams %d: %s needs shared streams, 1 or more, where 0 gives each append a new stream (left unset: its preset, %d)", ErrConfig, c.Streams, c.Scenario, p.Streams)
	}
	for _, r := range givenRanges {
		if given(r.flag) && !r.ok(c) {
			return fmt.Errorf("%w: --%s %v: want %s; left unset: %s", ErrConfig, r.flag, r.value(c), r.want, r.unset)
		}
	}
	return nil
}

// givenRanges are the ranges CheckGiven holds given settings to, by flag.
var givenRanges = []struct {
	flag  string
	value func(Config) any
	ok    func(Config) bool
	want  string
	unset string
}{
	{"duration", func(c Config) any { return c.Duration }, func(c Config) bool { return c.Duration > 0 },
		"a duration above 0, such as 30s", "the preset, or with --events no time bound"},
	{"events", func(c Config) any { return c.Events }, func(c Config) bool { return c.Events >= 1 },
		"1 or more events", "the preset, or with --duration no event bound"},
	{"writers", func(c Config) any { return c.Writers }, func(c Config) bool { return c.Writers >= 1 && c.Writers <= maxWriters },
		fmt.Sprintf("1 to %d writers", maxWriters), "the scenario's preset"},
	{"events-per-append", func(c Config) any { return c.EventsPerAppend },
		func(c Config) bool { return c.EventsPerAppend >= 1 && c.EventsPerAppend <= eventstore.MaxBatchEvents },
		fmt.Sprintf("1 to %d events", eventstore.MaxBatchEvents), "the scenario's preset"},
	{"event-size", func(c Config) any { return c.EventSize }, func(c Config) bool { return c.EventSize >= 0 && c.EventSize <= maxEventSize },
		fmt.Sprintf("0 (each type's natural size) to %d bytes", maxEventSize), "each type's natural size"},
	{"streams", func(c Config) any { return c.Streams }, func(c Config) bool { return c.Streams >= 0 },
		"0 (a new stream per append, which hot refuses) or more streams", "the scenario's preset"},
	{"rate", func(c Config) any { return c.Rate }, func(c Config) bool { return c.Rate >= 1 },
		"1 or more events/s", "the scenario's preset"},
	{"log-events", func(c Config) any { return c.LogEvents }, func(c Config) bool { return c.LogEvents >= 1 },
		"1 or more events", "the scenario's preset"},
	{"stream-events", func(c Config) any { return c.StreamEvents }, func(c Config) bool { return c.StreamEvents >= 1 },
		"1 or more events", "the scenario's preset"},
	{"rounds", func(c Config) any { return c.Rounds }, func(c Config) bool { return c.Rounds >= 0 && c.Rounds <= maxRounds },
		fmt.Sprintf("0 (the preset) to %d", maxRounds), "the scenario's preset"},
	{"committers", func(c Config) any { return c.StoreOptions.Committers }, func(c Config) bool { return c.StoreOptions.Committers >= 0 },
		"0 (the store's default) or more", "the store's default"},
}

// DefaultDatabaseURL is used when neither Config.DatabaseURL nor
// $DATABASE_URL is set.
const DefaultDatabaseURL = "postgres://root@127.0.0.1:5432/test?sslmode=disable"

// scenarioSetting is a setting that only some scenarios use.
type scenarioSetting struct {
	// name is how messages name it.
	name string
	// given returns the setting as the CLI flag spells it ("--events
	// 500") and whether it is given: zero takes the preset.
	given func(Config) (string, bool)
	// takenBy are the scenarios that use it, in run order.
	takenBy []string
	// instead says, for some of the others, what they do instead.
	instead map[string]string
	// clear sets the setting to "not given".
	clear func(*Config)
}

// scenarioSettings are the settings some scenarios do not use; resolve
// refuses one given to such a scenario. Rounds is not here: project and
// replay take 1 (what they do), and resolve refuses more.
var scenarioSettings = []scenarioSetting{
	{"duration", func(c Config) (string, bool) { return "--duration " + c.Duration.String(), c.Duration != 0 },
		[]string{"single", "batch", "hot", "project", "read"},
		map[string]string{"replay": "it rebuilds every event of its log (--log-events), however long that takes"},
		func(c *Config) { c.Duration = 0 }},
	{"events", intSetting("--events", func(c Config) int { return c.Events }),
		[]string{"single", "batch", "hot", "project"},
		map[string]string{
			"read":   "it reads whole passes for a duration (--duration, preset 3s)",
			"replay": "it rebuilds every event of its log (set their number with --log-events)",
		},
		func(c *Config) { c.Events = 0 }},
	{"streams", intSetting("--streams", func(c Config) int { return c.Streams }),
		[]string{"single", "batch", "hot", "project"},
		map[string]string{
			"read":   "it loads its log with a new stream per append, and one long stream (--stream-events)",
			"replay": "it loads its log with a new stream per append",
		},
		func(c *Config) { c.Streams = 0 }},
	{"exact versions", func(c Config) (string, bool) { return "--exact-versions", c.ExactVersions },
		[]string{"single", "batch", "hot", "project"},
		map[string]string{
			"read":   "it loads its log without exact expected versions",
			"replay": "it loads its log without exact expected versions",
		},
		func(c *Config) { c.ExactVersions = false }},
	{"rate", intSetting("--rate", func(c Config) int { return c.Rate }),
		[]string{"project"},
		map[string]string{
			"single": "its writers append as fast as they can",
			"batch":  "its writers append as fast as they can",
			"hot":    "its writers append as fast as they can",
		},
		func(c *Config) { c.Rate = 0 }},
	{"log events", intSetting("--log-events", func(c Config) int { return c.LogEvents }),
		[]string{"replay", "read"},
		map[string]string{
			"single":  "it appends to an empty log",
			"batch":   "it appends to an empty log",
			"hot":     "it appends to an empty log",
			"project": "it appends to an empty log",
		},
		func(c *Config) { c.LogEvents = 0 }},
	{"stream events", intSetting("--stream-events", func(c Config) int { return c.StreamEvents }),
		[]string{"read"},
		map[string]string{"replay": "it reads no long stream"},
		func(c *Config) { c.StreamEvents = 0 }},
}

// intSetting is the given func of an int setting read by v.
func intSetting(flag string, v func(Config) int) func(Config) (string, bool) {
	return func(c Config) (string, bool) { return fmt.Sprintf("%s %d", flag, v(c)), v(c) != 0 }
}

// checkTaken refuses a setting given to a scenario that does not use it,
// which would otherwise ignore it silently.
func (c Config) checkTaken() error {
	for _, s := range scenarioSettings {
		flag, given := s.given(c)
		if !given || slices.Contains(s.takenBy, c.Scenario) {
			continue
		}
		why := ""
		if w := s.instead[c.Scenario]; w != "" {
			why = ": " + w
		}
		verb := "take"
		if len(s.takenBy) == 1 {
			verb = "takes"
		}
		return fmt.Errorf("%w: %s takes no %s (%s)%s; only %s %s %s", ErrConfig, c.Scenario, s.name, flag, why, andList(s.takenBy), verb, s.name)
	}
	return nil
}

// WithoutUntaken returns c without the settings its scenario does not
// take, and those settings as the CLI flag spells them ("--duration 30s").
// A caller running every scenario (`--scenario all`) applies a setting to
// the scenarios that take it and says which ones ran without it, instead
// of refusing a setting that is meant for most of them; a scenario named
// on purpose is refused it (Check).
func WithoutUntaken(c Config) (Config, []string) {
	var dropped []string
	for _, s := range scenarioSettings {
		flag, given := s.given(c)
		if !given || slices.Contains(s.takenBy, c.Scenario) {
			continue
		}
		dropped = append(dropped, flag)
		s.clear(&c)
	}
	if (c.Scenario == "project" || c.Scenario == "replay") && c.Rounds > 1 {
		dropped = append(dropped, fmt.Sprintf("--rounds %d", c.Rounds))
		c.Rounds = 0
	}
	return c, dropped
}

// andList joins names as "a, b and c".
func andList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// resolve fills zero fields from the preset and checks the result.
func (c Config) resolve() (Config, error) {
	p, err := Preset(c.Scenario)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	// Before the preset fills them: a zero field was not given.
	if err := c.checkTaken(); err != nil {
		return c, err
	}
	if c.Duration == 0 && c.Events == 0 {
		c.Duration, c.Events = p.Duration, p.Events
	}
	if c.Writers == 0 {
		c.Writers = p.Writers
	}
	if c.EventsPerAppend == 0 {
		c.EventsPerAppend = p.EventsPerAppend
	}
	if c.Streams == 0 {
		c.Streams = p.Streams
	}
	if c.Rounds == 0 {
		c.Rounds = p.Rounds
	}
	c.ExactVersions = c.ExactVersions || p.ExactVersions
	if c.Rate == 0 {
		c.Rate = p.Rate
	}
	if c.LogEvents == 0 {
		c.LogEvents = p.LogEvents
	}
	if c.StreamEvents == 0 {
		c.StreamEvents = p.StreamEvents
	}
	if c.Mix == nil {
		c.Mix = DomainMix()
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = os.Getenv("DATABASE_URL")
	}
	if c.DatabaseURL == "" {
		c.DatabaseURL = DefaultDatabaseURL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	switch {
	case c.Rounds < 0 || c.Rounds > maxRounds:
		return bad("rounds must be 0 (the preset) to %d, not %d", maxRounds, c.Rounds)
	case (c.Scenario == "project" || c.Scenario == "replay") && c.Rounds > 1:
		return bad("%s runs ours, then raw, once: rounds (%d) apply to single, batch, hot and read only", c.Scenario, c.Rounds)
	case c.Duration < 0 || c.Events < 0:
		return bad("duration and events must not be negative")
	case c.Writers < 1 || c.Writers > maxWriters:
		return bad("writers must be between 1 and %d, not %d", maxWriters, c.Writers)
	case c.EventsPerAppend < 1 || c.EventsPerAppend > eventstore.MaxBatchEvents:
		return bad("events per append must be between 1 and %d, not %d", eventstore.MaxBatchEvents, c.EventsPerAppend)
	case c.EventSize < 0 || c.EventSize > maxEventSize:
		return bad("event size must be between 0 and %d bytes, not %d", maxEventSize, c.EventSize)
	case c.Scenario == "project" && c.Rate < 1:
		return bad("project needs a rate >= 1 event/s")
	case (c.Scenario == "replay" || c.Scenario == "read") && c.LogEvents < 1:
		return bad("%s needs log events >= 1", c.Scenario)
	case c.Scenario == "read" && c.StreamEvents < 1:
		return bad("read needs stream events >= 1")
	case c.Scenario == "hot" && c.Streams < 1:
		return bad("hot needs a number of streams >= 1")
	case c.SampleWaits != 0 && (c.SampleWaits < time.Millisecond || c.SampleWaits > time.Second):
		return bad("the wait sampling interval must be between 1ms and 1s, not %s", c.SampleWaits)
	}
	if c.Streams < 0 {
		c.Streams = 0
	}
	// A duration shared among rounds shorter than the rounds' number of
	// nanoseconds leaves each round 0, which a phase reads as no time
	// bound: single, batch and hot ran until interrupted, read 3s a round.
	if rounds := c.durationRounds(); c.Duration > 0 && c.Duration/time.Duration(rounds) == 0 {
		return bad("a duration of %s shared among %d rounds leaves each round none: give at least %s, or fewer rounds", c.Duration, rounds, time.Duration(rounds))
	}
	if c.ExactVersions && c.Streams == 0 {
		return bad("exact expected versions need shared streams (streams >= 1)")
	}
	if err := c.Mix.check(); err != nil {
		return bad("%v", err)
	}
	return c, nil
}

// durationRounds is how many rounds share the duration: the rounds of
// single, batch, hot (no more than their appends) and read; 1 elsewhere.
func (c Config) durationRounds() int64 {
	switch c.Scenario {
	case "single", "batch", "hot":
		rounds := int64(max(c.Rounds, 1))
		if ops := opsFor(c.Events, c.EventsPerAppend); ops > 0 {
			rounds = min(rounds, ops)
		}
		return rounds
	case "read":
		return int64(max(c.Rounds, 1))
	}
	return 1
}

// check refuses what the payload pool cannot generate, so that Check
// catches it before Run opens anything.
func (m Mix) check() error {
	total := 0
	for _, tw := range m {
		if _, ok := generatorFor(tw.Type); !ok {
			return fmt.Errorf("no generator for event type %q", tw.Type)
		}
		if tw.Weight < 1 {
			return fmt.Errorf("event type %q: weight must be >= 1", tw.Type)
		}
		total += tw.Weight
	}
	if total == 0 {
		return errors.New("the event type mix is empty")
	}
	return nil
}

// ScenarioHelp lists the presets, one per line, for a CLI's help text.
func ScenarioHelp() string {
	var b strings.Builder
	for _, s := range scenarios {
		fmt.Fprintf(&b, "  %-8s %s\n", s.Name, s.Description)
	}
	return b.String()
}
