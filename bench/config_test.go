package bench

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore/postgres"
)

// A scenario refuses a setting it does not use instead of ignoring it:
// a user who gave it would believe it changed the run. The message names
// the flag and the scenario. Nothing here needs a database.
func TestConfigRefusesSettingsTheScenarioDoesNotTake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want []string // in the message
	}{
		// The ones users met: read reads for a duration, replay rebuilds
		// its log however long that takes.
		{Config{Scenario: "read", Events: 500}, []string{"read takes no events", "--events 500", "--duration"}},
		{Config{Scenario: "read", Events: 500, Duration: time.Second}, []string{"read takes no events", "--events 500"}},
		{Config{Scenario: "replay", Duration: 30 * time.Second}, []string{"replay takes no duration", "--duration 30s", "--log-events"}},
		{Config{Scenario: "replay", Events: 500}, []string{"replay takes no events", "--events 500", "--log-events"}},
		// replay and read load their log with a new stream per append.
		{Config{Scenario: "read", Streams: 4}, []string{"read takes no streams", "--streams 4"}},
		{Config{Scenario: "replay", Streams: 4}, []string{"replay takes no streams", "--streams 4"}},
		{Config{Scenario: "read", Streams: 4, ExactVersions: true}, []string{"read takes no streams", "--streams 4"}},
		{Config{Scenario: "replay", ExactVersions: true}, []string{"replay takes no exact versions", "--exact-versions"}},
		{Config{Scenario: "read", ExactVersions: true}, []string{"read takes no exact versions", "--exact-versions"}},
		// Only project paces its appends.
		{Config{Scenario: "single", Rate: 500}, []string{"single takes no rate", "--rate 500", "only project takes rate"}},
		{Config{Scenario: "batch", Rate: -5}, []string{"batch takes no rate", "--rate -5", "only project takes rate"}},
		{Config{Scenario: "hot", Rate: 500}, []string{"hot takes no rate", "--rate 500"}},
		{Config{Scenario: "replay", Rate: 500}, []string{"replay takes no rate", "--rate 500"}},
		{Config{Scenario: "read", Rate: 500}, []string{"read takes no rate", "--rate 500"}},
		// Only replay and read load a log before they measure.
		{Config{Scenario: "single", LogEvents: 1000}, []string{"single takes no log events", "--log-events 1000", "only replay and read take log events"}},
		{Config{Scenario: "batch", LogEvents: 1000}, []string{"batch takes no log events", "--log-events 1000"}},
		{Config{Scenario: "hot", LogEvents: 1000}, []string{"hot takes no log events", "--log-events 1000"}},
		{Config{Scenario: "project", LogEvents: 1000}, []string{"project takes no log events", "--log-events 1000"}},
		// Only read reads a long stream.
		{Config{Scenario: "replay", StreamEvents: 100}, []string{"replay takes no stream events", "--stream-events 100", "only read takes stream events"}},
		{Config{Scenario: "single", StreamEvents: 100}, []string{"single takes no stream events", "--stream-events 100"}},
		{Config{Scenario: "project", StreamEvents: 100}, []string{"project takes no stream events", "--stream-events 100"}},
	} {
		err := Check(tc.cfg)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: got %v, want ErrConfig", tc.cfg, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %q lacks %q", tc.cfg, err, w)
			}
		}
	}
	// Run refuses the same before it touches the database: there is no
	// server behind this URL.
	_, err := Run(context.Background(), Config{Scenario: "replay", Duration: time.Second, DatabaseURL: "postgres://nobody@127.0.0.1:1/none"})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--duration") {
		t.Errorf("Run of replay with a duration: got %v, want ErrConfig naming --duration", err)
	}
}

// What a scenario takes, and every setting left unset (the preset), it
// still accepts.
func TestConfigAcceptsSettingsTheScenarioTakes(t *testing.T) {
	t.Parallel()
	for _, name := range ScenarioNames() {
		if err := Check(Config{Scenario: name}); err != nil {
			t.Errorf("%s with its preset: refused: %v", name, err)
		}
		// The configurations the scenario tests run with.
		if err := Check(small(name)); err != nil {
			t.Errorf("%s as the tests run it: refused: %v", name, err)
		}
		// Taken by every scenario (replay and read load their log with them).
		every := Config{Scenario: name, Writers: 2, EventsPerAppend: 10, EventSize: 300, RandomIDs: true, Seed: 7,
			SkipRaw: true, Keep: true, Rounds: 1, Mix: Mix{{Type: "distribution.viewed", Weight: 1}}}
		if err := Check(every); err != nil {
			t.Errorf("%s with settings every scenario takes: refused: %v", name, err)
		}
	}
	for _, c := range []Config{
		{Scenario: "single", Duration: time.Second, Events: 100, Streams: 3, ExactVersions: true},
		{Scenario: "batch", Duration: time.Second, Events: 100, Streams: -1},
		{Scenario: "hot", Duration: time.Second, Events: 100, Streams: 3, ExactVersions: true},
		{Scenario: "project", Duration: time.Second, Events: 100, Rate: 500, Streams: 3, ExactVersions: true},
		{Scenario: "replay", LogEvents: 1000},
		{Scenario: "read", Duration: time.Second, LogEvents: 1000, StreamEvents: 100, Rounds: 2},
	} {
		if err := Check(c); err != nil {
			t.Errorf("%+v: refused: %v", c, err)
		}
	}
	// Unset, read's duration stays zero (its 3s) and replay's stays
	// unbounded: the refusals look at what was given, not at the preset.
	for _, name := range []string{"read", "replay"} {
		c, err := Config{Scenario: name}.resolve()
		if err != nil || c.Duration != 0 || c.Events != 0 || c.LogEvents != 200_000 {
			t.Errorf("%s preset: %+v, %v", name, c, err)
		}
	}
}

// WithoutUntaken (what `--scenario all` does) keeps what a scenario takes
// and drops, naming them, the settings it does not: what is left passes
// Check for every scenario.
func TestWithoutUntakenKeepsWhatEachScenarioTakes(t *testing.T) {
	given := Config{Duration: 30 * time.Second, Events: 500, Streams: 4, ExactVersions: true, Rate: 100,
		LogEvents: 1000, StreamEvents: 10, Rounds: 3}
	want := map[string][]string{
		"single":  {"--rate 100", "--log-events 1000", "--stream-events 10"},
		"batch":   {"--rate 100", "--log-events 1000", "--stream-events 10"},
		"hot":     {"--rate 100", "--log-events 1000", "--stream-events 10"},
		"project": {"--log-events 1000", "--stream-events 10", "--rounds 3"},
		"replay":  {"--duration 30s", "--events 500", "--streams 4", "--exact-versions", "--rate 100", "--stream-events 10", "--rounds 3"},
		"read":    {"--events 500", "--streams 4", "--exact-versions", "--rate 100"},
	}
	for _, name := range ScenarioNames() {
		c := given
		c.Scenario = name
		if err := Check(c); err == nil {
			t.Errorf("%s: Check accepted every setting; the test wants some refused", name)
		}
		kept, dropped := WithoutUntaken(c)
		if !slices.Equal(dropped, want[name]) {
			t.Errorf("%s: dropped %q, want %q", name, dropped, want[name])
		}
		if err := Check(kept); err != nil {
			t.Errorf("%s: what WithoutUntaken kept is refused: %v", name, err)
		}
		// What the scenario takes is kept as given.
		if name == "single" && (kept.Duration != given.Duration || kept.Events != given.Events || kept.Rounds != given.Rounds) {
			t.Errorf("single: kept %+v, want duration, events and rounds as given", kept)
		}
		if name == "replay" && kept.LogEvents != given.LogEvents {
			t.Errorf("replay: log events %d, want %d", kept.LogEvents, given.LogEvents)
		}
	}
}

// A setting given outside its range is refused, naming its flag and what
// it wants, 0 included where 0 means nothing: a Config cannot tell a 0
// given from one left unset, and Run would silently run the preset
// (`--writers 0` ran 64 writers). Where 0 is documented it is kept, and
// an unset setting still takes the preset.
func TestCheckGivenRefusesValuesOutOfRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg   Config
		given string // the flag given
		want  []string
	}{
		{Config{Scenario: "single"}, "duration", []string{"--duration 0s", "above 0"}},
		{Config{Scenario: "single", Duration: -time.Second}, "duration", []string{"--duration -1s", "above 0"}},
		{Config{Scenario: "single"}, "events", []string{"--events 0", "1 or more"}},
		{Config{Scenario: "single", Events: -5}, "events", []string{"--events -5", "1 or more"}},
		{Config{Scenario: "single"}, "writers", []string{"--writers 0", "1 to 512"}},
		{Config{Scenario: "single", Writers: -3}, "writers", []string{"--writers -3", "1 to 512"}},
		{Config{Scenario: "single", Writers: 513}, "writers", []string{"--writers 513", "1 to 512"}},
		{Config{Scenario: "batch"}, "events-per-append", []string{"--events-per-append 0", "1 to 10000"}},
		{Config{Scenario: "batch", EventsPerAppend: 10_001}, "events-per-append", []string{"--events-per-append 10001", "1 to 10000"}},
		{Config{Scenario: "single", EventSize: -1}, "event-size", []string{"--event-size -1", "0 (each type's natural size) to 524288 bytes"}},
		{Config{Scenario: "project"}, "rate", []string{"--rate 0", "1 or more events/s"}},
		{Config{Scenario: "project", Rate: -1}, "rate", []string{"--rate -1", "1 or more events/s"}},
		{Config{Scenario: "replay"}, "log-events", []string{"--log-events 0", "1 or more events"}},
		{Config{Scenario: "read"}, "stream-events", []string{"--stream-events 0", "1 or more events"}},
		{Config{Scenario: "single", Rounds: 101}, "rounds", []string{"--rounds 101", "0 (the preset) to 100"}},
		{Config{Scenario: "single", StoreOptions: postgres.Options{Committers: -1}}, "committers", []string{"--committers -1", "0 (the store's default) or more"}},
		// hot needs shared streams: 0 (a new stream per append) ran its
		// preset's 10 instead.
		{Config{Scenario: "hot"}, "streams", []string{"--streams 0", "hot needs shared streams", "1 or more"}},
		{Config{Scenario: "hot", Streams: -1}, "streams", []string{"--streams -1", "hot needs shared streams"}},
		// Negative streams meant a new stream per append, like 0, in the
		// scenarios other than hot: -1 ran as if 0 were given.
		{Config{Scenario: "single", Streams: -1}, "streams", []string{"--streams -1", "want 0 (a new stream per append, which hot refuses) or more"}},
		{Config{Scenario: "batch", Streams: -1}, "streams", []string{"--streams -1", "want 0"}},
		{Config{Scenario: "project", Streams: -5}, "streams", []string{"--streams -5", "want 0"}},
		{Config{Streams: -1}, "streams", []string{"--streams -1", "want 0"}},
	} {
		err := CheckGiven(tc.cfg, func(flag string) bool { return flag == tc.given })
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s given, %+v: got %v, want ErrConfig", tc.given, tc.cfg, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s given, %+v: %q lacks %q", tc.given, tc.cfg, err, w)
			}
		}
	}

	// Where 0 is documented, a 0 given is what it says.
	for _, tc := range []struct {
		cfg   Config
		given string
	}{
		{Config{Scenario: "single"}, "streams"}, // a new stream per append
		{Config{Scenario: "batch", Streams: 3}, "streams"},
		{Config{Scenario: "read"}, "streams"}, // read's own, as unset
		{Config{Scenario: "single"}, "event-size"},
		{Config{Scenario: "single"}, "rounds"},
		{Config{Scenario: "single"}, "committers"},
		{Config{Scenario: "single"}, "linger"},
		{Config{Scenario: "single", StoreOptions: postgres.Options{Linger: -1}}, "linger"},
		{Config{Scenario: "single"}, "seed"},
		{Config{Scenario: "single", Writers: 512}, "writers"},
		{Config{Scenario: "batch", EventsPerAppend: 10_000}, "events-per-append"},
		// With no scenario, hot's need is not checked.
		{Config{}, "streams"},
	} {
		if err := CheckGiven(tc.cfg, func(flag string) bool { return flag == tc.given }); err != nil {
			t.Errorf("%s given, %+v: refused: %v", tc.given, tc.cfg, err)
		}
	}

	// Unset, every setting takes the preset: nothing given is refused, and
	// resolve fills the zeros.
	for _, name := range ScenarioNames() {
		if err := CheckGiven(Config{Scenario: name}, func(string) bool { return false }); err != nil {
			t.Errorf("%s with nothing given: refused: %v", name, err)
		}
	}
	c, err := Config{Scenario: "hot"}.resolve()
	if err != nil || c.Writers != 16 || c.EventsPerAppend != 1 || c.Streams != 10 || c.Rounds != 5 || c.Duration != 10*time.Second {
		t.Errorf("hot left unset: %+v, %v; want its preset (16 writers, 1 event per append, 10 streams, 5 rounds, 10s)", c, err)
	}
	c, err = Config{Scenario: "project"}.resolve()
	if err != nil || c.Rate != 10_000 || c.Writers != 256 {
		t.Errorf("project left unset: %+v, %v; want its preset (rate 10000, 256 writers)", c, err)
	}
	c, err = Config{Scenario: "replay"}.resolve()
	if err != nil || c.LogEvents != 200_000 || c.EventsPerAppend != 100 {
		t.Errorf("replay left unset: %+v, %v; want its preset (200000 log events, 100 events per append)", c, err)
	}
}

// A duration shared among rounds that leaves each round 0 is refused:
// a phase reads 0 as no time bound, so `--duration 4ns` (5 rounds) ran
// single until interrupted, and read 3s a round. A duration of one
// nanosecond a round passes, and so does one with as few appends as ns.
func TestDurationTooShortForItsRoundsIsRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{Scenario: "single", Duration: 4},
		{Scenario: "hot", Duration: 9, Rounds: 10},
		{Scenario: "batch", Duration: 2, Events: 300},
		{Scenario: "read", Duration: 2},
	} {
		err := Check(c)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "leaves each round none") {
			t.Errorf("%s, duration %s, %d rounds: got %v, want ErrConfig", c.Scenario, c.Duration, c.Rounds, err)
		}
	}
	for _, c := range []Config{
		{Scenario: "single", Duration: 5},
		{Scenario: "single", Duration: 2, Events: 2},
		{Scenario: "read", Duration: 3},
		{Scenario: "project", Duration: 1},
	} {
		if err := Check(c); err != nil {
			t.Errorf("%s, duration %s: refused: %v", c.Scenario, c.Duration, err)
		}
	}
}

// An event count near the largest int is a count: working out its
// appends overflowed to a negative number, read as no count at all.
func TestOpsForTheLargestEventCount(t *testing.T) {
	t.Parallel()
	if got, want := opsFor(math.MaxInt, 2), int64(math.MaxInt/2+1); got != want {
		t.Errorf("opsFor(MaxInt, 2) = %d, want %d", got, want)
	}
	if got := opsFor(7, 3); got != 3 {
		t.Errorf("opsFor(7, 3) = %d, want 3", got)
	}
	if got := opsFor(6, 3); got != 2 {
		t.Errorf("opsFor(6, 3) = %d, want 2", got)
	}
}
