package cli_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSchemasDocsToStdoutPrintsOnlyTheCatalog: schemas docs -o /dev/stdout
// writes the catalog where stdout goes, and there the catalog is the
// output, as with -o -. With stdout redirected to a file (> FILE), --json
// printed its result object to stdout as well, at offset 0 of the same
// file, over the catalog's first line (the text result did the same);
// with stdout a pipe, docs first read /dev/stdout for the catalog it held
// and waited there for ever (SIGTERM did not end it).
func TestSchemasDocsToStdoutPrintsOnlyTheCatalog(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	want := c.must(0, "schemas", "docs", "-o", "-").stdout
	run := func(stdout any, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, append([]string{"schemas", "docs", "-o", "/dev/stdout"}, args...)...)
		cmd.Dir = c.dir
		cmd.Env = cleanEnv()
		var stderr bytes.Buffer
		switch o := stdout.(type) {
		case *os.File:
			cmd.Stdout = o
		case *bytes.Buffer:
			cmd.Stdout = o // a pipe
		}
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("schemas docs -o /dev/stdout %v: %v (ctx: %v)\n%s", args, err, ctx.Err(), stderr.String())
		}
	}
	for _, args := range [][]string{{"--json"}, nil} {
		path := filepath.Join(c.dir, "catalog.md")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		run(f, args...)
		f.Close()
		if got := readFileT(t, path); got != want {
			n := min(len(got), 200)
			t.Errorf("schemas docs -o /dev/stdout %v > FILE: FILE is not the catalog; it starts:\n%s", args, got[:n])
		}
		var pipe bytes.Buffer
		run(&pipe, args...)
		if pipe.String() != want {
			n := min(pipe.Len(), 200)
			t.Errorf("schemas docs -o /dev/stdout %v | …: stdout is not the catalog; it starts:\n%s", args, pipe.String()[:n])
		}
	}
}
