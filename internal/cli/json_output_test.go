package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var snakeKey = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// keysOf collects the object keys of a decoded JSON value, nested ones
// included, except under the keys in opaque (user data: payloads, meta).
func keysOf(v any, opaque map[string]bool, into map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			into[k] = true
			if !opaque[k] {
				keysOf(e, opaque, into)
			}
		}
	case []any:
		for _, e := range x {
			keysOf(e, opaque, into)
		}
	}
}

// onlyJSON decodes stdout as one JSON value (or one per line) and fails
// the test on a key that is not snake_case; it returns the first value.
func onlyJSON(t *testing.T, what, stdout string) map[string]any {
	t.Helper()
	var first map[string]any
	for i, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("%s --json: stdout is not JSON (line %q: %v):\n%s", what, line, err, stdout)
		}
		keys := map[string]bool{}
		keysOf(v, map[string]bool{"payload": true, "meta": true}, keys)
		for k := range keys {
			if !snakeKey.MatchString(k) {
				t.Errorf("%s --json: key %q is not snake_case: %s", what, k, line)
			}
		}
		if m, ok := v.(map[string]any); ok && i == 0 {
			first = m
		}
	}
	return first
}

// TestReplayJSONKeysAreSnakeCase: replay --json printed the rebuild's
// result with Go's field names ("Projection", "Events"), unlike every
// other command's JSON.
func TestReplayJSONKeysAreSnakeCase(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(20)
	c.must(0, "migrate")
	r := c.must(0, "replay", "audit", "--json")
	got := onlyJSON(t, "replay", r.stdout)
	for _, k := range []string{"projection", "generation", "previous_generation", "position", "events", "parked", "resumed"} {
		if _, ok := got[k]; !ok {
			t.Errorf("replay --json: no %q: %s", k, r.stdout)
		}
	}
	if got["projection"] != "audit" || got["events"] != float64(20) || got["previous_generation"] != float64(1) || got["generation"] != float64(2) {
		t.Errorf("replay --json: %s", r.stdout)
	}
}

// TestMutatingCommandsHonourJSON: commands that change something printed
// human text under the global --json (a script got "resumed audit" where
// it expected an object). Each now prints one JSON object with
// snake_case keys.
func TestMutatingCommandsHonourJSON(t *testing.T) {
	t.Parallel()
	c := newCLI(t)
	c.appendMany(10)
	c.must(0, "migrate")

	check := func(args []string, want map[string]any) {
		t.Helper()
		r := c.must(0, append(args, "--json")...)
		got := onlyJSON(t, strings.Join(args, " "), r.stdout)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s --json: %q = %v, want %v: %s", strings.Join(args, " "), k, got[k], v, r.stdout)
			}
		}
	}
	check([]string{"replay", "audit", "--cancel"}, map[string]any{"projection": "audit", "cancelled": false})
	check([]string{"projections", "resume", "audit"}, map[string]any{"projection": "audit", "resumed": false})

	c.must(0, "tokens", "create", "acme", "--name", "jsontest")
	check([]string{"tokens", "revoke", "jsontest"}, map[string]any{"revoked": float64(1)})

	out := filepath.Join(c.dir, "export.ndjson")
	check([]string{"export", "--output", out}, map[string]any{"file": out, "events": float64(10), "resumed": false})
	if n := len(jsonLines(t, readFileT(t, out))); n != 10 {
		t.Fatalf("export --output --json wrote %d lines to the file, want 10", n)
	}
	check([]string{"export", "--output", out}, map[string]any{"file": out, "events": float64(0), "resumed": true})

	role := c.scratchRole("json_")
	c.must(0, "tenants", "grant-analyst", "acme", role, "--no-login")
	check([]string{"tenants", "revoke-analyst", role}, map[string]any{"role": role, "revoked": true})
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
