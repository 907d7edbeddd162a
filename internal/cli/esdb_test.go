package cli_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/brainhq/eventstream/eventstore/esdb/esdbtest"
)

// TestHistoryMovesBetweenPostgresAndEventStoreDB exports a PostgreSQL log,
// imports it into EventStoreDB (the in-process protocol stand-in, not a
// real server), exports it from there and imports that into another
// PostgreSQL schema: ids, streams, versions and order survive both ways,
// and a second import writes nothing.
func TestHistoryMovesBetweenPostgresAndEventStoreDB(t *testing.T) {
	t.Parallel()
	srv, err := esdbtest.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	src, back := newCLI(t), newCLI(t)
	src.appendMany(120)

	pgExport := filepath.Join(src.dir, "pg.ndjson")
	src.must(0, "export", "--output", pgExport)
	esdb := []string{"--store", "esdb", "--eventstore-url", srv.URL()}
	r := src.must(0, append(esdb, "import", pgExport, "--json")...)
	if got := jsonLines(t, r.stdout)[0]; got["written"] != float64(120) {
		t.Fatalf("import into esdb: %s", r)
	}
	r = src.must(0, append(esdb, "import", pgExport, "--json")...)
	if got := jsonLines(t, r.stdout)[0]; got["written"] != float64(0) || got["already_present"] != float64(120) {
		t.Fatalf("second import into esdb wrote: %s", r)
	}
	esdbExport := filepath.Join(src.dir, "esdb.ndjson")
	src.must(0, append(esdb, "export", "--output", esdbExport)...)
	back.must(0, "import", esdbExport)

	a := jsonLines(t, src.must(0, "read", "--all", "--json").stdout)
	b := jsonLines(t, src.must(0, append(esdb, "read", "--all", "--json")...).stdout)
	c := jsonLines(t, back.must(0, "read", "--all", "--json").stdout)
	if len(a) != 120 || len(b) != 120 || len(c) != 120 {
		t.Fatalf("events: postgres %d, esdb %d, back %d", len(a), len(b), len(c))
	}
	for i := range a {
		for _, k := range []string{"id", "stream", "version", "type"} {
			if a[i][k] != b[i][k] || a[i][k] != c[i][k] {
				t.Fatalf("event %d: %s differs: %v / %v / %v", i, k, a[i][k], b[i][k], c[i][k])
			}
		}
	}
}
