package migrate_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/brainhq/eventstream/internal/migrate"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func TestLoadReadsInVersionOrder(t *testing.T) {
	ms, err := migrate.Load(fstest.MapFS{
		"010_ten.up.sql":    file("10"),
		"002_two.up.sql":    file("2"),
		"001_one.up.sql":    file("1"),
		"README.md":         file("not a migration"),
		"old/001_x.up.sql":  file("a subfolder is not read"),
		"003_three.up.sql":  file("3"),
		"004_four.up.sql":   file("4"),
		"005_five.up.sql":   file("5"),
		"006_six.up.sql":    file("6"),
		"007_seven.up.sql":  file("7"),
		"008_eight.up.sql":  file("8"),
		"009_nine.up.sql":   file("9"),
		"011_eleven.up.sql": file("11"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(ms), 11; got != want {
		t.Fatalf("Load found %d migrations, want %d", got, want)
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Fatalf("migration %d has version %d", i, m.Version)
		}
	}
	if got, want := ms[9].Name+":"+ms[9].SQL, "ten:10"; got != want {
		t.Fatalf("migration 10 = %q, want %q", got, want)
	}
}

// TestLoadRefusesWhatItWouldSkip: a hole, a duplicate, or a file that
// looks like a migration but is not named like one stops Load, naming the
// file, since skipping it would leave a database short of a migration.
func TestLoadRefusesWhatItWouldSkip(t *testing.T) {
	for _, tc := range []struct{ name, file string }{
		{"a hole", "004_four.up.sql"},
		{"a duplicate", "02_two_again.up.sql"},
		{"a down migration", "002_two.down.sql"},
		{"capitals in the name", "003_Three.up.sql"},
		{"capitals in the extension", "003_three.up.SQL"},
		{"no .up", "003_three.sql"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			_, err := migrate.Load(fstest.MapFS{
				"001_one.up.sql": file("1"),
				"002_two.up.sql": file("2"),
				tc.file:          file("x"),
			})
			if err == nil || !strings.Contains(err.Error(), strings.SplitN(tc.file, "_", 2)[1][:3]) {
				t.Fatalf("Load with %s (%s): %v, want an error naming it", tc.name, tc.file, err)
			}
		})
	}
}
