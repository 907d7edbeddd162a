package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestSchemasListValidateLintDocs(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	var list []struct {
		Type     string `json:"type"`
		Versions []int  `json:"versions"`
	}
	if err := json.Unmarshal([]byte(c.must(0, "schemas", "list", "--json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range list {
		if s.Type == "course.generation.requested" {
			found = len(s.Versions) == 2 && s.Versions[1] == 2
		}
	}
	if !found || len(list) < 30 {
		t.Fatalf("schemas list: %+v", list)
	}

	ok := writeFile(t, c.dir, "ok.json", `{"course_id":"`+uuid.NewString()+`","topic":"Go","attempt":1,"language":"en"}`)
	if r := c.must(0, "schemas", "validate", "course.generation.requested", "2", ok); !strings.Contains(r.stdout, "valid") {
		t.Fatalf("validate ok: %s", r)
	}
	bad := writeFile(t, c.dir, "bad.json", `{"course_id":"`+uuid.NewString()+`","topic":"Go","attempt":0,"language":"en"}`)
	r := c.must(3, "schemas", "validate", "course.generation.requested", "v2", bad, "--json")
	if !strings.Contains(r.stderr, `"pointer":"/payload/attempt"`) || !strings.Contains(r.stderr, `"rule":"minimum"`) {
		t.Fatalf("validate bad: %s", r)
	}
	c.must(3, "schemas", "validate", "no.such.type", "1", ok)
	c.must(3, "schemas", "validate", "course.generation.requested", "7", ok)
	c.must(3, "schemas", "validate", "course.generation.requested", "2", writeFile(t, c.dir, "notjson.json", `{"a":`))
	c.must(2, "schemas", "validate", "course.generation.requested", "two", ok)
	c.must(2, "schemas", "validate", "course.generation.requested", "2", filepath.Join(c.dir, "missing.json"))
	c.must(2, "schemas", "nope")

	if r := c.must(0, "schemas", "lint"); strings.Contains(r.stdout, "FAIL") {
		t.Fatalf("lint of the embedded schemas: %s", r)
	}
	// A folder with a version hole and a type without a Go type fails.
	dir := filepath.Join(c.dir, "schemas")
	for _, f := range []string{"envelope/v1.json", "course.generation.requested/v1.json"} {
		src, err := os.ReadFile(filepath.Join("..", "..", "schemas", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, mkdir(t, filepath.Join(dir, filepath.Dir(f))), filepath.Base(f), string(src))
	}
	src, _ := os.ReadFile(filepath.Join("..", "..", "schemas", "course.generation.requested", "v2.json"))
	writeFile(t, dir, "course.generation.requested/v3.json", string(src))
	r = c.must(3, "schemas", "lint", "--dir", dir)
	if !strings.Contains(r.stdout, "FAIL") || !strings.Contains(r.stdout, "hole") {
		t.Fatalf("lint of a folder with a hole: %s", r)
	}
	_ = os.Remove(filepath.Join(dir, "course.generation.requested", "v3.json"))
	r = c.must(3, "schemas", "lint", "--dir", dir, "--json")
	if !strings.Contains(r.stdout, `"ok":false`) || !strings.Contains(r.stdout, "Go type") {
		t.Fatalf("lint of a folder missing most types: %s", r)
	}

	docs := filepath.Join(c.dir, "events.md")
	if r := c.must(0, "schemas", "docs", "-o", docs); !strings.Contains(r.stdout, "updated") {
		t.Fatalf("docs: %s", r)
	}
	if r := c.must(0, "schemas", "docs", "-o", docs); !strings.Contains(r.stdout, "unchanged") {
		t.Fatalf("docs twice: %s", r)
	}
	got, _ := os.ReadFile(docs)
	if want := c.must(0, "schemas", "docs", "-o", "-").stdout; string(got) != want || !strings.Contains(want, "course.generation.requested") {
		t.Fatalf("docs file differs from docs -o -")
	}
}

func mkdir(t *testing.T, p string) string {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
