package domain_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	cf "github.com/brainhq/eventstream/aggregates/coursefactory"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/aggregates/governance"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/aggregates/missions"
)

// A command that names no aggregate (an empty course, distribution, IR,
// approval or mission id) is the caller's mistake: every module refuses it
// with aggregate-id-required (aggregates.ErrMissingID, an ErrRefused), the
// refusal naming the id that is missing, and nothing is written. Before, it
// was an untyped "aggregates: mission: empty id" that matched neither
// ErrRefused nor ErrNotFound, so a caller (or a reaction runtime deciding
// whether to park an event) could not tell it from a store failure.
func TestACommandWithAnEmptyIDIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := dt.Memory(t, domain.Options{})
	meta := dt.Meta()

	// A consumed approval of t1's, so that GrantApproval reaches the
	// mission it names (none).
	approval := uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, meta, governance.CreateApproval{ApprovalID: approval, IRID: "ir-1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, meta, governance.ConsumeApproval{ApprovalID: approval, Token: token}); err != nil {
		t.Fatal(err)
	}

	type run func() (carries bool, err error)
	course := func(c aggregates.Command[cf.State]) run {
		return func() (bool, error) {
			res, err := env.Courses.Handle(ctx, meta, c)
			return res.Aggregate != nil || len(res.Events) > 0, err
		}
	}
	dist := func(c aggregates.Command[distribution.State]) run {
		return func() (bool, error) {
			res, err := env.Distributions.Handle(ctx, meta, c)
			return res.Aggregate != nil || len(res.Events) > 0, err
		}
	}
	mission := func(c aggregates.Command[missions.State]) run {
		return func() (bool, error) {
			res, err := env.Missions.Handle(ctx, meta, c)
			return res.Aggregate != nil || len(res.Events) > 0, err
		}
	}
	cases := []struct {
		aggregate string
		name      string
		run       run
	}{
		{cf.AggregateName, "RequestGeneration", course(cf.RequestGeneration{Topic: "Go"})},
		{cf.AggregateName, "StartOutlining", course(cf.StartOutlining{})},
		{distribution.AggregateName, "Create", dist(distribution.Create{CourseID: uuid.NewString(), Channel: distribution.ChannelWeb, Title: "Go"})},
		{distribution.AggregateName, "Publish", dist(distribution.Publish{})},
		{distribution.AggregateName, "HandleFunc", func() (bool, error) {
			res, err := env.Distributions.HandleFunc(ctx, "", meta, distribution.Publish{}.Decide)
			return res.Aggregate != nil || len(res.Events) > 0, err
		}},
		{governance.ApprovalAggregate, "CreateApproval", func() (bool, error) {
			_, res, err := env.Governance.CreateApproval(ctx, meta, governance.CreateApproval{IRID: "ir-1"}, time.Hour)
			return res.Aggregate != nil || len(res.Events) > 0, err
		}},
		{governance.IRAggregate, "ValidateIR", func() (bool, error) {
			res, err := env.Governance.ValidateIR(ctx, meta, governance.ValidateIR{IR: governance.IR{Steps: []governance.Step{{ID: "a", Action: "http.get"}}}})
			return res.Aggregate != nil || len(res.Events) > 0, err
		}},
		{governance.IRAggregate, "CheckDAG", func() (bool, error) {
			res, err := env.Governance.CheckDAG(ctx, meta, governance.CheckDAG{})
			return res.Aggregate != nil || len(res.Events) > 0, err
		}},
		{missions.AggregateName, "Create", mission(missions.Create{IRID: "ir-1", Title: "Nightly", Steps: []governance.Step{{ID: "a", Action: "http.get"}}})},
		{missions.AggregateName, "Cancel", mission(missions.Cancel{})},
		{missions.AggregateName, "Start", mission(missions.Start{})},
		{missions.AggregateName, "RecordValidation", mission(missions.RecordValidation{})},
		{missions.AggregateName, "GrantApproval", mission(missions.GrantApproval{ApprovalID: approval})},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s", c.aggregate, c.name), func(t *testing.T) {
			before := dt.Head(t, env.Store)
			carries, err := c.run()
			var re *aggregates.RuleError
			if !errors.As(err, &re) || !errors.Is(err, aggregates.ErrMissingID) || !errors.Is(err, aggregates.ErrRefused) {
				t.Fatalf("error = %v, want the %s refusal", err, aggregates.ErrMissingID.Rule)
			}
			if errors.Is(err, aggregates.ErrNotFound) || re.Aggregate != c.aggregate || !strings.Contains(err.Error(), c.aggregate+" id") {
				t.Fatalf("the refusal does not name the missing %s id: %+v (%v)", c.aggregate, re, err)
			}
			if carries {
				t.Fatal("the refused result carries an aggregate or events")
			}
			if after := dt.Head(t, env.Store); after != before {
				t.Fatalf("the log moved from %v to %v", before, after)
			}
		})
	}
}
