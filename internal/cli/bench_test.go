package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// Bench refuses bad flags with exit 2 before it runs anything, or even
// connects: the database URL here has no server behind it, so a run
// that got as far as connecting would end with exit 75 (unavailable)
// instead.
func TestBenchRefusesBadFlagsBeforeRunningAnything(t *testing.T) {
	t.Parallel()
	const nowhere = "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"
	c := &cli{t: t, dir: t.TempDir()}
	for _, tc := range []struct {
		args []string
		want string // in the message
	}{
		{[]string{"--scenario", "nope"}, `--scenario "nope"`},
		{[]string{"--scenario", "single,nope", "--events", "20"}, `--scenario "nope"`},
		{[]string{"--scenario", "single", "--types", "no.such.type"}, "--types"},
		{[]string{"--scenario", "single", "--writers", "-3"}, "writers"},
		// single is fine, project is not: refused before single runs,
		// where single's report used to be lost.
		{[]string{"--scenario", "single,project", "--events", "20", "--rounds", "3"}, "scenario project"},
		{[]string{"--scenario", "single", "--rounds", "101"}, "0 (the preset) to 100"},
		{[]string{"--scenario", "single", "--rounds", "-1"}, "0 (the preset) to 100"},
		{[]string{"--scenario", "project", "--rounds", "3"}, "single, batch, hot and read only"},
		{[]string{"--scenario", "replay", "--rounds", "2"}, "single, batch, hot and read only"},
		// A 0 given where 0 means nothing ran the preset instead (--writers
		// 0 ran 64 writers); now it is refused like any value out of range,
		// naming the flag and what it wants.
		{[]string{"--scenario", "single", "--writers", "0"}, "--writers 0: want 1 to 512"},
		{[]string{"--scenario", "single", "--writers", "513"}, "--writers 513: want 1 to 512"},
		{[]string{"--scenario", "batch", "--events-per-append", "0"}, "--events-per-append 0: want 1 to 10000"},
		{[]string{"--scenario", "batch", "--events-per-append", "10001"}, "--events-per-append 10001: want 1 to 10000"},
		{[]string{"--scenario", "project", "--rate", "0"}, "--rate 0: want 1 or more events/s"},
		{[]string{"--scenario", "replay", "--log-events", "0"}, "--log-events 0: want 1 or more"},
		{[]string{"--scenario", "read", "--stream-events", "0"}, "--stream-events 0: want 1 or more"},
		{[]string{"--scenario", "single", "--events", "0"}, "--events 0: want 1 or more"},
		{[]string{"--scenario", "single", "--events", "-5"}, "--events -5: want 1 or more"},
		{[]string{"--scenario", "single", "--duration", "0"}, "--duration 0s: want a duration above 0"},
		// Shared among 5 rounds, 4ns left each round 0: no time bound,
		// and single ran until interrupted.
		{[]string{"--scenario", "single", "--duration", "4ns"}, "leaves each round none"},
		{[]string{"--scenario", "single", "--event-size", "-1"}, "--event-size -1: want 0 (each type's natural size) to"},
		{[]string{"--scenario", "single", "--committers", "-1"}, "--committers -1: want 0 (the store's default) or more"},
		// --streams 0 is a new stream per append, which hot cannot do: it
		// ran its preset's 10 streams instead.
		{[]string{"--scenario", "hot", "--streams", "0"}, "--streams 0: hot needs shared streams"},
		{[]string{"--scenario", "single,hot", "--streams", "0"}, "scenario hot: bench: invalid configuration: --streams 0"},
		// A negative --streams ran as 0 (a new stream per append) in
		// every scenario but hot; now every one refuses it.
		{[]string{"--scenario", "single", "--streams", "-1"}, "--streams -1: want 0 (a new stream per append, which hot refuses) or more"},
		{[]string{"--scenario", "batch", "--streams", "-1"}, "--streams -1: want 0"},
		{[]string{"--scenario", "project", "--streams", "-2"}, "--streams -2: want 0"},
		{[]string{"--scenario", "hot", "--streams", "-1"}, "--streams -1"},
		{[]string{"--scenario", "read", "--streams", "-1"}, "--streams -1"},
		{[]string{"--streams", "-1"}, "--streams -1: want 0"},
		// With every scenario too, where a setting goes only to the
		// scenarios that take it.
		{[]string{"--rate", "0"}, "--rate 0: want 1 or more"},
		{[]string{"--log-events", "0"}, "--log-events 0: want 1 or more"},
		{[]string{"--streams", "0"}, "scenario hot: bench: invalid configuration: --streams 0"},
		// One file for both reports: the second would replace the first.
		{[]string{"--scenario", "single", "--html", "/dev/stdout", "--markdown", "/dev/stdout"}, "--html and --markdown name the same file"},
		{[]string{"--scenario", "single", "--html", "/dev/stdout", "--markdown", "/proc/self/fd/1"}, "--html and --markdown name the same file"},
	} {
		r := c.runIn(context.Background(), append([]string{"--database-url", nowhere, "bench"}, tc.args...)...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bench %s: want exit 2, no output and %q in the message; got %s", strings.Join(tc.args, " "), tc.want, r)
		}
	}
	// The controls: flags that pass the checks get as far as connecting,
	// among them a 0 where the flag's help gives it a meaning.
	for _, args := range [][]string{
		{"--scenario", "single", "--events", "20"},
		{"--scenario", "single", "--streams", "0"},
		{"--scenario", "single", "--event-size", "0"},
		{"--scenario", "single", "--rounds", "0"},
		{"--scenario", "single", "--committers", "0", "--linger", "0", "--seed", "0"},
		{"--scenario", "single", "--linger", "-1ms"},
	} {
		r := c.runIn(context.Background(), append([]string{"--database-url", nowhere, "bench"}, args...)...)
		if r.code != 75 {
			t.Errorf("bench %s with no server: want exit 75 (unavailable), got %s", strings.Join(args, " "), r)
		}
	}
}

// A flag left unset still takes the scenario's preset: batch's 4 writers
// and 100 events per append, as the report's config says. The run is a
// few hundred milliseconds (200 events, no raw phase).
func TestBenchUnsetFlagsTakeThePreset(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	r := c.must(0, "--json", "bench", "--scenario", "batch", "--events", "200", "--rounds", "1", "--no-raw")
	var out struct {
		Reports []struct {
			Scenario string `json:"scenario"`
			Verified bool   `json:"verified"`
			Config   struct {
				Writers         int `json:"writers"`
				EventsPerAppend int `json:"events_per_append"`
				Events          int `json:"events"`
			} `json:"config"`
		} `json:"reports"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, r.stdout)
	}
	if len(out.Reports) != 1 {
		t.Fatalf("%d reports, want 1: %s", len(out.Reports), r.stdout)
	}
	rep := out.Reports[0]
	if rep.Scenario != "batch" || !rep.Verified || rep.Config.Writers != 4 || rep.Config.EventsPerAppend != 100 || rep.Config.Events != 200 {
		t.Errorf("report %+v, want batch, verified, with the preset's 4 writers and 100 events per append, and the 200 events given", rep)
	}
}

// A flag that a scenario does not take is refused (exit 2, nothing run)
// instead of being ignored, and the message names the flag and the
// scenario. A list is refused when one of its scenarios does not take it;
// all (the default) gives it to the scenarios that take it.
func TestBenchRefusesFlagsTheScenarioDoesNotTake(t *testing.T) {
	t.Parallel()
	const nowhere = "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"
	c := &cli{t: t, dir: t.TempDir()}
	for _, tc := range []struct {
		args []string
		want []string // in the message
	}{
		{[]string{"--scenario", "read", "--events", "500"}, []string{"read takes no events", "--events 500"}},
		{[]string{"--scenario", "replay", "--duration", "30s"}, []string{"replay takes no duration", "--duration 30s"}},
		{[]string{"--scenario", "replay", "--events", "500"}, []string{"replay takes no events", "--events 500"}},
		{[]string{"--scenario", "read", "--streams", "4"}, []string{"read takes no streams", "--streams 4"}},
		{[]string{"--scenario", "replay", "--exact-versions"}, []string{"replay takes no exact versions", "--exact-versions"}},
		{[]string{"--scenario", "single", "--rate", "500"}, []string{"single takes no rate", "--rate 500"}},
		{[]string{"--scenario", "batch", "--log-events", "1000"}, []string{"batch takes no log events", "--log-events 1000"}},
		{[]string{"--scenario", "replay", "--stream-events", "100"}, []string{"replay takes no stream events", "--stream-events 100"}},
		// A list: the first scenario that does not take it is named.
		{[]string{"--scenario", "single,read", "--events", "20"}, []string{"scenario read", "--events 20"}},
		{[]string{"--scenario", "batch,replay", "--duration", "30s"}, []string{"scenario replay", "--duration 30s", "only single, batch, hot, project and read take duration"}},
	} {
		r := c.runIn(context.Background(), append([]string{"--database-url", nowhere, "bench"}, tc.args...)...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("bench %s: want exit 2 and no output; got %s", strings.Join(tc.args, " "), r)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("bench %s: message lacks %q: %s", strings.Join(tc.args, " "), w, r.stderr)
			}
		}
	}
	// The controls: each scenario's own flags, and none, pass the checks
	// and get as far as connecting.
	for _, args := range [][]string{
		{"--scenario", "read", "--duration", "1s", "--log-events", "100", "--stream-events", "10"},
		{"--scenario", "replay", "--log-events", "100", "--rounds", "1"},
		{"--scenario", "project", "--events", "20", "--rate", "100", "--streams", "2", "--exact-versions"},
		{"--scenario", "single,batch,hot,project,read", "--duration", "1s"},
		{"--scenario", "all"},
		// all: each setting goes to the scenarios that take it.
		{"--duration", "30s"},
		{"--rounds", "3"},
		{"--scenario", "all", "--events", "20", "--rate", "100", "--log-events", "1000"},
	} {
		r := c.runIn(context.Background(), append([]string{"--database-url", nowhere, "bench"}, args...)...)
		if r.code != 75 {
			t.Errorf("bench %s with no server: want exit 75 (unavailable), got %s", strings.Join(args, " "), r)
		}
	}
}
