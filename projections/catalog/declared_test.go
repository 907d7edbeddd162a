package catalog_test

import (
	"slices"
	"testing"

	"github.com/brainhq/eventstream/projections/catalog"
	schemacatalog "github.com/brainhq/eventstream/schemas/catalog"
)

// The event catalog (docs/events.md, generated from schemas/catalog's
// declarations) names the course catalog as a consumer of exactly the
// types the projection handles.
func TestEventCatalogNamesWhatTheCatalogHandles(t *testing.T) {
	const consumer = "projection: course catalog"
	decl := schemacatalog.Default()
	handled := map[string]bool{}
	for _, h := range catalog.Handles {
		handled[h.Type] = true
		if !slices.Contains(decl[h.Type].ConsumedBy, consumer) {
			t.Errorf("the catalog handles %s, but the event catalog does not name it as a consumer", h.Type)
		}
	}
	for typ, d := range decl {
		if slices.Contains(d.ConsumedBy, consumer) && !handled[typ] {
			t.Errorf("the event catalog names the catalog as a consumer of %s, which it does not handle", typ)
		}
	}
}
