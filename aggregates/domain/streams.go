package domain

import (
	"strings"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/coursefactory"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/governance"
	"github.com/brainhq/eventstream/aggregates/missions"
)

// StreamCategory is a category of streams a domain module owns: the
// streams of one of its aggregate types ("<aggregate>-<id>"). The module
// keeps its invariants by deciding every event of these streams from
// their current state, so they must be written only through its commands:
// an event appended raw into one (mission.started, ir.validated_pass …)
// is read by the aggregate as if the module had decided it. The HTTP API
// refuses raw appends into them (docs/aggregates.md, "Streams only
// modules write").
type StreamCategory struct {
	// Prefix starts every stream of the category:
	// aggregates.StreamPrefix(Aggregate), e.g. "mission-".
	Prefix string
	// Aggregate is the aggregate type (its Definition.Name), e.g. "mission".
	Aggregate string
	// Module is the package that writes the streams, e.g.
	// "aggregates/missions".
	Module string
	// Commands says where the module's commands are handled, e.g.
	// "missions.Service.Handle".
	Commands string
}

// streamCategories is built from the modules' own aggregate names, the
// ones their repositories name their streams with.
var streamCategories = []StreamCategory{
	category(coursefactory.AggregateName, "aggregates/coursefactory", "coursefactory.Service.Handle"),
	category(distribution.AggregateName, "aggregates/distribution", "distribution.Service.Handle"),
	category(governance.IRAggregate, "aggregates/governance", "governance.Service.ValidateIR, CheckDAG"),
	category(governance.ApprovalAggregate, "aggregates/governance", "governance.Service.CreateApproval, ConsumeApproval, ExpireApproval"),
	category(missions.AggregateName, "aggregates/missions", "missions.Service.Handle, GrantApproval"),
}

func category(aggregate, module, commands string) StreamCategory {
	return StreamCategory{Prefix: aggregates.StreamPrefix(aggregate), Aggregate: aggregate, Module: module, Commands: commands}
}

// StreamCategories returns the stream categories of the four domain
// modules' aggregates: course-, distribution-, ir-, approval-, mission-.
func StreamCategories() []StreamCategory {
	return append([]StreamCategory(nil), streamCategories...)
}

// CategoryOf returns the module-owned category stream belongs to, if any.
// The match is exact, bytes for bytes, as the store names streams:
// "missions-1" or "Mission-1" is no module's stream (no module reads it).
func CategoryOf(stream string) (StreamCategory, bool) {
	for _, c := range streamCategories {
		if strings.HasPrefix(stream, c.Prefix) {
			return c, true
		}
	}
	return StreamCategory{}, false
}
