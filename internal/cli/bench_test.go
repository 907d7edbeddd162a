package cli_test

import (
	"context"
	"strings"
	"testing"
)

// Bench refuses bad flags with exit 2 before it runs anything, or even
// connects: the database URL here has no server behind it, so a run
// that got as far as connecting would end with exit 1 instead.
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
		{[]string{"--scenario", "single,project", "--events", "20", "--rate", "-5"}, "scenario project"},
		{[]string{"--scenario", "single", "--rounds", "101"}, "0 (the preset) to 100"},
		{[]string{"--scenario", "single", "--rounds", "-1"}, "0 (the preset) to 100"},
		{[]string{"--scenario", "project", "--rounds", "3"}, "single, batch, hot and read only"},
		{[]string{"--scenario", "replay", "--rounds", "2"}, "single, batch, hot and read only"},
		{[]string{"--rounds", "3"}, "scenario project"}, // all: project is among them
	} {
		r := c.runIn(context.Background(), append([]string{"--database-url", nowhere, "bench"}, tc.args...)...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bench %s: want exit 2, no output and %q in the message; got %s", strings.Join(tc.args, " "), tc.want, r)
		}
	}
	// The control: flags that pass the checks get as far as connecting.
	r := c.runIn(context.Background(), "--database-url", nowhere, "bench", "--scenario", "single", "--events", "20")
	if r.code != 1 {
		t.Errorf("bench with good flags and no server: want exit 1 (connection), got %s", r)
	}
}
