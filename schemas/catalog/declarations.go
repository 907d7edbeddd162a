package catalog

// Default declares the consumers of the domain events: the read models of
// the projections issue and the reactions of aggregates/reactions. Emitters
// come from each schema's x-emitted-by. Keep this map in step with the
// code: a consumer that starts or stops handling a type updates it, and
// docs/events.md is regenerated.
func Default() Declarations {
	const (
		audit     = "projection: audit log"
		analytics = "projection: analytics"
		alerts    = "projection: security alerts"
		catalog   = "projection: course catalog"
	)
	return Declarations{
		"*": {ConsumedBy: []string{audit, analytics}},

		"course.workflow.transitioned": {ConsumedBy: []string{catalog}},
		"course.generation.requested":  {ConsumedBy: []string{catalog}},
		"course.outline.created":       {ConsumedBy: []string{catalog}},
		"course.lesson.generated":      {ConsumedBy: []string{catalog}},
		"course.quiz.created":          {ConsumedBy: []string{catalog}},
		"course.landing_page.created":  {ConsumedBy: []string{catalog}},
		"course.generation.completed":  {ConsumedBy: []string{catalog, "reaction: course-completed.create-distribution (aggregates/reactions)"}},
		"course.generation.failed":     {ConsumedBy: []string{catalog}},
		"course.deployed.staging":      {EmittedBy: []string{"reaction: distribution-created.deploy-staging"}, ConsumedBy: []string{catalog, "reaction: course-deployed.record-staging-url (aggregates/reactions)"}},

		"distribution.created":             {EmittedBy: []string{"reaction: course-completed.create-distribution"}, ConsumedBy: []string{catalog, "reaction: distribution-created.deploy-staging (aggregates/reactions)"}},
		"distribution.updated":             {EmittedBy: []string{"reaction: course-deployed.record-staging-url"}, ConsumedBy: []string{catalog}},
		"distribution.deleted":             {ConsumedBy: []string{catalog}},
		"distribution.published":           {ConsumedBy: []string{catalog}},
		"distribution.unpublished":         {ConsumedBy: []string{catalog}},
		"distribution.viewed":              {ConsumedBy: []string{catalog}},
		"distribution.enrollment_clicked":  {ConsumedBy: []string{catalog}},
		"distribution.micro_niche_created": {ConsumedBy: []string{catalog}},
		"distribution.version_bumped":      {ConsumedBy: []string{catalog}},

		"ir.approval_invalid":   {ConsumedBy: []string{alerts}},
		"ir.dag_diff_failed":    {ConsumedBy: []string{alerts}},
		"ir.approval_consumed":  {ConsumedBy: []string{"reaction: approval-consumed.grant-mission-approval (aggregates/reactions)"}},
		"ir.validated_pass":     {EmittedBy: []string{"reaction: mission-created.validate-ir"}, ConsumedBy: []string{"reaction: ir-validated.record-mission-verdict (aggregates/reactions)"}},
		"ir.validated_escalate": {EmittedBy: []string{"reaction: mission-created.validate-ir"}, ConsumedBy: []string{"reaction: ir-validated.record-mission-verdict (aggregates/reactions)"}},
		"ir.validated_reject":   {EmittedBy: []string{"reaction: mission-created.validate-ir"}, ConsumedBy: []string{"reaction: ir-validated.record-mission-verdict (aggregates/reactions)"}},

		"mission.created":          {ConsumedBy: []string{"reaction: mission-created.validate-ir (aggregates/reactions)"}},
		"mission.validated":        {EmittedBy: []string{"reaction: ir-validated.record-mission-verdict"}},
		"mission.approval_granted": {EmittedBy: []string{"reaction: approval-consumed.grant-mission-approval"}},
	}
}
