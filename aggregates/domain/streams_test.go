package domain_test

import (
	"slices"
	"testing"

	"github.com/brainhq/eventstream/aggregates/domain"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
)

// TestStreamCategoriesAreTheRepositoriesStreams: the categories the HTTP
// API protects are exactly the streams the modules' repositories read and
// write, one per aggregate type, none missing and none extra, so a module
// that renames its aggregate moves its protection with it.
func TestStreamCategoriesAreTheRepositoriesStreams(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	type repo struct {
		name   string
		stream func(string) string
		module string
	}
	repos := []repo{
		{env.Courses.Repository().Name(), env.Courses.Repository().Stream, "aggregates/coursefactory"},
		{env.Distributions.Repository().Name(), env.Distributions.Repository().Stream, "aggregates/distribution"},
		{env.Governance.IRs().Name(), env.Governance.IRs().Stream, "aggregates/governance"},
		{env.Governance.Approvals().Name(), env.Governance.Approvals().Stream, "aggregates/governance"},
		{env.Missions.Repository().Name(), env.Missions.Repository().Stream, "aggregates/missions"},
	}
	cats := domain.StreamCategories()
	if len(cats) != len(repos) {
		t.Fatalf("%d categories for %d aggregate types: %+v", len(cats), len(repos), cats)
	}
	var prefixes []string
	for _, r := range repos {
		stream := r.stream("0b3c5d1e-7f00-4a2b-9c3d-4e5f60718293")
		c, ok := domain.CategoryOf(stream)
		if !ok || c.Aggregate != r.name || c.Module != r.module || c.Commands == "" {
			t.Errorf("aggregate %s writes %s: category %+v, %v", r.name, stream, c, ok)
		}
		prefixes = append(prefixes, c.Prefix)
	}
	slices.Sort(prefixes)
	if want := []string{"approval-", "course-", "distribution-", "ir-", "mission-"}; !slices.Equal(prefixes, want) {
		t.Fatalf("prefixes %v, want %v", prefixes, want)
	}
	// The match is exact: streams whose names only look like a module's
	// are no module's (no repository reads them).
	for _, s := range []string{"missions-1", "mission", "Mission-1", "my-mission-1", "course_1", "irs-1", "approvals", ""} {
		if c, ok := domain.CategoryOf(s); ok {
			t.Errorf("%q is taken for a stream of %+v", s, c)
		}
	}
	// The list handed out is a copy.
	cats[0].Prefix = "x-"
	if _, ok := domain.CategoryOf("course-1"); !ok || domain.StreamCategories()[0].Prefix == "x-" {
		t.Fatal("changing the returned list changed the categories")
	}
}
