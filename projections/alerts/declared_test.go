package alerts_test

import (
	"slices"
	"testing"

	"github.com/brainhq/eventstream/projections/alerts"
	schemacatalog "github.com/brainhq/eventstream/schemas/catalog"
)

// The event catalog (docs/events.md) names the security alerts as a
// consumer of exactly the types the projection handles.
func TestEventCatalogNamesWhatTheAlertsHandle(t *testing.T) {
	const consumer = "projection: security alerts"
	decl := schemacatalog.Default()
	handled := map[string]bool{}
	for _, h := range alerts.Projection().Handles {
		handled[h.Type] = true
		if !slices.Contains(decl[h.Type].ConsumedBy, consumer) {
			t.Errorf("the alerts handle %s, but the event catalog does not name them as a consumer", h.Type)
		}
	}
	for typ, d := range decl {
		if slices.Contains(d.ConsumedBy, consumer) && !handled[typ] {
			t.Errorf("the event catalog names the alerts as a consumer of %s, which they do not handle", typ)
		}
	}
}
