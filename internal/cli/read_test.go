package cli_test

import (
	"strings"
	"testing"
	"time"
)

// TestReadRefusesAStreamVersionThatIsNotANumber: --from of a stream is a
// version, a whole number from 1; anything else is a usage error (exit
// 2), not read as the number it starts with (1.5 read from version 1,
// 2abc from 2).
func TestReadRefusesAStreamVersionThatIsNotANumber(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(5) // course-0 … course-4, one event each
	for _, from := range []string{"1.5", "2abc", "0x1", "1e0", "0", "-1", "99999999999999999999"} {
		if r := c.run("read", "course-0", "--from", from); r.code != 2 {
			t.Errorf("read course-0 --from %q: want exit 2, got %s", from, r)
		}
	}
	if n := c.count("course-0", "--from", "1"); n != 1 {
		t.Fatalf("read course-0 --from 1: %d events, want 1", n)
	}
}

// TestReadRefusesATypeFilterNoEventCanHave: read --all --type with a name
// outside the type-name rule is refused (exit 3) with the rule, and
// prints no table header above the error.
func TestReadRefusesATypeFilterNoEventCanHave(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(1)
	r := c.run("read", "--all", "--type", "Not a type")
	if r.code != 3 || !strings.Contains(r.stderr, "type-name") || strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("read --all --type %q: want exit 3 naming type-name and nothing on stdout, got %s", "Not a type", r)
	}
}

// TestReadUnderANonISODateStyle: a database whose DateStyle is not ISO
// (here German, given as a session option as ALTER DATABASE would), used
// through the simple protocol, where pgx parses timestamps from text in
// the ISO style only. The command's sessions ask for ISO, so reading the
// log and the stream works and shows the stored timestamps.
func TestReadUnderANonISODateStyle(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.url += "&default_query_exec_mode=simple_protocol&options=-c%20datestyle%3DGerman"
	c.appendMany(3)
	all := jsonLines(t, c.must(0, "read", "--all", "--json").stdout)
	one := jsonLines(t, c.must(0, "read", "course-1", "--json").stdout)
	if len(all) != 3 || len(one) != 1 {
		t.Fatalf("read %d events from the log and %d from course-1, want 3 and 1", len(all), len(one))
	}
	for _, e := range append(all, one...) {
		ts, _ := e["timestamp"].(string)
		if at, err := time.Parse(time.RFC3339Nano, ts); err != nil || time.Since(at) > time.Hour || time.Since(at) < -time.Minute {
			t.Fatalf("timestamp %q (%v): want the time of the append, in RFC 3339", ts, err)
		}
	}
}
