package cli_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSchemasDocsAppendedToStdoutKeepsWhatTheFileHeld: schemas docs
// writing to the file stdout is appended to (-o /dev/stdout >> FILE, or
// -o FILE >> FILE) appends the catalog there, as the shell was asked to:
// docs opened the path again with O_TRUNC and emptied FILE of what it held
// before writing the catalog.
func TestSchemasDocsAppendedToStdoutKeepsWhatTheFileHeld(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	catalog := c.must(0, "schemas", "docs", "-o", "-").stdout
	const held = "# notes kept before the catalog\n"
	for _, output := range []string{"/dev/stdout", "FILE"} {
		path := filepath.Join(c.dir, "notes.md")
		if err := os.WriteFile(path, []byte(held), 0o644); err != nil {
			t.Fatal(err)
		}
		if output == "FILE" {
			output = path
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		r := c.runTo(f, "schemas", "docs", "-o", output)
		f.Close()
		if r.code != 0 {
			t.Fatalf("schemas docs -o %s >> FILE: %s", output, r)
		}
		if got := readFileT(t, path); got != held+catalog {
			t.Errorf("schemas docs -o %s >> FILE: FILE is not what it held followed by the catalog; it starts:\n%.200s", output, got)
		}
	}
}
