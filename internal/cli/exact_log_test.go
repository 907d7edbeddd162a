package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// logRow is one event as a resumed import, export or backfill must carry
// it: a count of events passes with one missing and another twice, so
// these tests compare the events themselves.
type logRow struct {
	ID       string
	Stream   string
	Version  int64
	Position int64 // 0: not compared
}

func (r logRow) String() string {
	return fmt.Sprintf("%s %s@%d pos %d", r.ID, r.Stream, r.Version, r.Position)
}

// rows runs a query of id, stream, version and position.
func (c *cli) rows(sql string) []logRow {
	c.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (logRow, error) {
		var r logRow
		err := row.Scan(&r.ID, &r.Stream, &r.Version, &r.Position)
		return r, err
	})
	if err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// logRows is the test's log, in the order of its positions.
func (c *cli) logRows() []logRow {
	c.t.Helper()
	return c.rows(`SELECT id::text, stream, version, position FROM events ORDER BY position`)
}

// importedFrom is what importing the NDJSON envelopes in content into an
// empty log must leave there: every event of the file once, in the file's
// order, in its stream, at its rank in the stream (from 1) as version.
func importedFrom(t *testing.T, content string) []logRow {
	t.Helper()
	next := map[string]int64{}
	var want []logRow
	for _, e := range jsonLines(t, content) {
		id, _ := e["id"].(string)
		stream, _ := e["stream"].(string)
		if id == "" || stream == "" {
			t.Fatalf("not an event with an id and a stream: %v", e)
		}
		next[stream]++
		want = append(want, logRow{ID: id, Stream: stream, Version: next[stream]})
	}
	return want
}

// exportedRows is the events of an export's NDJSON, in the file's order.
func exportedRows(t *testing.T, content string) []logRow {
	t.Helper()
	var out []logRow
	for _, l := range strings.Split(strings.TrimSpace(content), "\n") {
		var e struct {
			ID       string `json:"id"`
			Stream   string `json:"stream"`
			Version  int64  `json:"version"`
			Position int64  `json:"position"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("export line %q: %v", l, err)
		}
		out = append(out, logRow{ID: e.ID, Stream: e.Stream, Version: e.Version, Position: e.Position})
	}
	return out
}

// checkSameEvents fails the test unless got holds exactly want's events,
// each once, in want's order, with want's stream and version (and
// position, where want gives one). It names the ids missing and the ids
// twice before the first difference.
func checkSameEvents(t *testing.T, what string, got, want []logRow) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range got {
		seen[r.ID]++
	}
	var twice, missing []string
	for id, n := range seen {
		if n > 1 {
			twice = append(twice, fmt.Sprintf("%s (%d times)", id, n))
		}
	}
	wanted := map[string]bool{}
	for _, r := range want {
		wanted[r.ID] = true
		if seen[r.ID] == 0 {
			missing = append(missing, r.ID)
		}
	}
	var extra []string
	for id := range seen {
		if !wanted[id] {
			extra = append(extra, id)
		}
	}
	if len(twice)+len(missing)+len(extra) > 0 {
		t.Fatalf("%s: %d events, want %d; missing %v; twice %v; not in the source %v", what, len(got), len(want), missing, twice, extra)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if w.Position == 0 {
			g.Position = 0
		}
		if g != w {
			t.Fatalf("%s: event %d is %s, want %s", what, i, got[i], w)
		}
	}
}

// auditRows is the audit read model, in the order of its positions.
func (c *cli) auditRows() []logRow {
	c.t.Helper()
	return c.rows(`SELECT event_id::text, stream, version, position FROM audit_events ORDER BY position`)
}
