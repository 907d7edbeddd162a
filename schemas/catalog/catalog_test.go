package catalog_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/brainhq/eventstream/schemas"
	"github.com/brainhq/eventstream/schemas/catalog"
)

// docs/events.md must be what Generate renders from schemas/. Run the
// tests with UPDATE_CATALOG=1 (or `eventstream schemas docs`) to rewrite it.
func TestEventsMarkdownIsUpToDate(t *testing.T) {
	got, err := catalog.Generate(schemas.MustDefault())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "events.md")
	if os.Getenv("UPDATE_CATALOG") != "" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it with UPDATE_CATALOG=1 go test ./schemas/catalog)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/events.md is out of date with schemas/: regenerate it with `eventstream schemas docs` or UPDATE_CATALOG=1 go test ./schemas/catalog")
	}
}

func TestCatalogCoversEveryTypeWithFieldsAndParties(t *testing.T) {
	t.Parallel()
	reg := schemas.MustDefault()
	entries, err := catalog.Build(reg, catalog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(entries), len(reg.Types()); got != want {
		t.Fatalf("%d entries for %d types", got, want)
	}
	byType := map[string]catalog.Entry{}
	for _, e := range entries {
		byType[e.Type] = e
		if len(e.ConsumedBy) == 0 {
			t.Errorf("%s: no consumer (the audit log consumes everything)", e.Type)
		}
	}
	req := byType["course.generation.requested"]
	if req.Latest != 2 || len(req.Versions) != 2 || len(req.EmittedBy) == 0 {
		t.Fatalf("course.generation.requested = %+v", req)
	}
	var lang *catalog.Field
	for i, f := range req.Fields {
		if f.Name == "language" {
			lang = &req.Fields[i]
		}
	}
	if lang == nil || !lang.Required || lang.Type != "string" || !strings.Contains(lang.Constraints, "default `\"en\"`") || lang.Description == "" {
		t.Fatalf("language field = %+v", lang)
	}
	outline := byType["course.outline.created"]
	var nested bool
	for _, f := range outline.Fields {
		if f.Name == "lessons[].slot" && f.Required && f.Type == "integer" {
			nested = true
		}
	}
	if !nested {
		t.Fatalf("course.outline.created fields %+v lack lessons[].slot", outline.Fields)
	}
	alerts := byType["ir.dag_diff_failed"]
	if !strings.Contains(strings.Join(alerts.ConsumedBy, ","), "security alerts") {
		t.Fatalf("ir.dag_diff_failed consumers %v", alerts.ConsumedBy)
	}
}

func TestDeclarationsByPrefixAndWildcard(t *testing.T) {
	t.Parallel()
	fs := fstest.MapFS{
		"envelope/v1.json": {Data: mustEnvelope(t)},
		"a.one/v1.json":    {Data: []byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","x-emitted-by":"module a","type":"object","required":["x"],"properties":{"x":{"type":"string","enum":["p","q|r"]}},"additionalProperties":false}`)},
		"b.two/v1.json":    {Data: []byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{}}`)},
	}
	reg, err := schemas.Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := catalog.Build(reg, catalog.Declarations{
		"*":     {ConsumedBy: []string{"everyone"}},
		"a.":    {ConsumedBy: []string{"a-reader"}},
		"b.two": {EmittedBy: []string{"module b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(entries[0].ConsumedBy, ","); got != "everyone,a-reader" {
		t.Fatalf("a.one consumers %q", got)
	}
	if got := strings.Join(entries[0].EmittedBy, ","); got != "module a" {
		t.Fatalf("a.one emitters %q", got)
	}
	if got := strings.Join(entries[1].EmittedBy, ","); got != "module b" {
		t.Fatalf("b.two emitters %q", got)
	}
	var b bytes.Buffer
	if err := catalog.Render(&b, entries); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "`q\\|r`") || !strings.Contains(b.String(), "No payload fields.") {
		t.Fatalf("rendered:\n%s", b.String())
	}
}

func mustEnvelope(t *testing.T) []byte {
	b, err := os.ReadFile(filepath.Join("..", "envelope", "v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
