package missions_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/aggregates/governance"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/aggregates/missions"
	"github.com/brainhq/eventstream/aggregates/reactions"
	"github.com/brainhq/eventstream/eventstore"
)

var ctx = context.Background()

func do(t *testing.T, env *dt.Env, c aggregates.Command[missions.State]) aggregates.Result[missions.State] {
	t.Helper()
	res, err := env.Missions.Handle(ctx, dt.Meta(), c)
	if err != nil {
		t.Fatalf("%T: %v", c, err)
	}
	return res
}

var steps = []governance.Step{{ID: "fetch", Action: "http.get", Tier: 0}, {ID: "write", Action: "db.write", Tier: 1}}
var risky = []governance.Step{{ID: "fetch", Action: "http.get", Tier: 0}, {ID: "pay", Action: "payments.send", Tier: 2}}

// forbidden is a plan of tiers 0 and 1 that the default policy rejects
// (no-tenant-deletion): only governance's verdict keeps it from running.
var forbidden = []governance.Step{{ID: "fetch", Action: "http.get", Tier: 0}, {ID: "drop", Action: "tenant.delete", Tier: 1}}

func create(t *testing.T, env *dt.Env, s []governance.Step) (id, ir string) {
	t.Helper()
	id, ir = uuid.NewString(), "ir-"+uuid.NewString()
	do(t, env, missions.Create{MissionID: id, IRID: ir, Title: "Nightly sync", Steps: s, CreatedBy: "ops"})
	return id, ir
}

// validate has governance validate the mission's IR for the mission, as
// the mission.created reaction does, checks its outcome, and returns the
// RecordValidation the ir.validated_* reaction issues for it.
func validate(t *testing.T, env *dt.Env, id, want string) missions.RecordValidation {
	t.Helper()
	a, err := env.Missions.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	res, err := env.Governance.ValidateIR(ctx, dt.Meta(), governance.ValidateIR{IR: governance.IR{ID: a.State.IRID, Steps: a.State.Steps}, MissionID: id})
	if err != nil {
		t.Fatalf("ValidateIR: %v", err)
	}
	g := res.Aggregate.State
	if g.Outcome != want {
		t.Fatalf("governance judged IR %s %s, want %s", g.IRID, g.Outcome, want)
	}
	return missions.RecordValidation{MissionID: id, IRID: g.IRID, Outcome: g.Outcome, MaxTier: g.MaxTier, Rule: g.Rule}
}

// runAll creates and completes a task per step.
func runAll(t *testing.T, env *dt.Env, id string, s []governance.Step) {
	t.Helper()
	for _, st := range s {
		task := uuid.NewString()
		do(t, env, missions.CreateTask{MissionID: id, TaskID: task, StepID: st.ID})
		do(t, env, missions.CompleteTask{MissionID: id, TaskID: task})
	}
}

func TestMissionPassPath(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, _ := create(t, env, steps)
	do(t, env, validate(t, env, id, governance.OutcomePass))
	do(t, env, missions.Start{MissionID: id})
	runAll(t, env, id, steps)
	res := do(t, env, missions.Complete{MissionID: id})
	if s := res.Aggregate.State; s.Status != missions.StatusCompleted || len(s.Tasks) != 2 {
		t.Fatalf("state = %+v", s)
	}
	got := dt.Types(t, env.Store, "mission-"+id)
	want := []string{missions.TypeCreated, missions.TypeValidated, missions.TypeStarted, missions.TypeTaskCreated, missions.TypeTaskCompleted,
		missions.TypeTaskCreated, missions.TypeTaskCompleted, missions.TypeCompleted}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}
}

// An escalated mission starts only with a consumed approval for its own
// IR, checked against governance's record.
func TestTier2MissionNeedsAConsumedApproval(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, ir := create(t, env, risky)
	do(t, env, validate(t, env, id, governance.OutcomeEscalate))

	before := dt.Head(t, env.Store)
	_, err := env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: id})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalRequired)

	approval := uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: id}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Not consumed yet.
	before = dt.Head(t, env.Store)
	_, err = env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: id, ApprovalID: approval})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalNotConsumed)

	// A consumed approval for another IR.
	other := uuid.NewString()
	otherToken, _, _ := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: other, IRID: "ir-other"}, time.Hour)
	if _, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: other, Token: otherToken}); err != nil {
		t.Fatal(err)
	}
	before = dt.Head(t, env.Store)
	_, err = env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: id, ApprovalID: other})
	dt.Refused(t, env.Store, before, err, missions.ErrIRMismatch)

	// An approval that does not exist.
	_, err = env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: id, ApprovalID: uuid.NewString()})
	dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)

	if _, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: approval, Token: token}); err != nil {
		t.Fatal(err)
	}
	// Another tenant cannot use it for its mission.
	before = dt.Head(t, env.Store)
	_, err = env.Missions.GrantApproval(ctx, aggregates.CommandMeta{TenantID: "t2"}, missions.GrantApproval{MissionID: id, ApprovalID: approval})
	dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)

	do2 := func(c missions.GrantApproval) aggregates.Result[missions.State] {
		res, err := env.Missions.GrantApproval(ctx, dt.Meta(), c)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := do2(missions.GrantApproval{MissionID: id, ApprovalID: approval}); len(res.Events) != 1 || res.Events[0].Type != missions.TypeApprovalGranted {
		t.Fatalf("grant wrote %v", res.Events)
	}
	if res := do2(missions.GrantApproval{MissionID: id, ApprovalID: approval}); len(res.Events) != 0 {
		t.Fatal("granting the same approval again wrote events")
	}
	res := do(t, env, missions.Start{MissionID: id})
	if res.Aggregate.State.Status != missions.StatusRunning || res.Aggregate.State.ApprovalID != approval {
		t.Fatalf("state = %+v", res.Aggregate.State)
	}
}

func TestMissionRefusals(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	type setup func() string
	created := func() string { id, _ := create(t, env, steps); return id }
	running := func() string {
		id, _ := create(t, env, steps)
		do(t, env, validate(t, env, id, governance.OutcomePass))
		do(t, env, missions.Start{MissionID: id})
		return id
	}
	rejected := func() string {
		id, _ := create(t, env, forbidden)
		do(t, env, validate(t, env, id, governance.OutcomeReject))
		return id
	}
	completed := func() string {
		id := running()
		runAll(t, env, id, steps)
		do(t, env, missions.Complete{MissionID: id})
		return id
	}
	cancelled := func() string {
		id := created()
		do(t, env, missions.Cancel{MissionID: id, Reason: "not needed"})
		return id
	}
	failed := func() string {
		id := running()
		do(t, env, missions.Fail{MissionID: id, Reason: "upstream down"})
		return id
	}
	missing := func() string { return uuid.NewString() }
	withTask := func() string {
		id := running()
		do(t, env, missions.CreateTask{MissionID: id, TaskID: "00000000-0000-4000-8000-000000000001", StepID: "fetch"})
		return id
	}
	cases := []struct {
		name string
		from setup
		cmd  func(id string) aggregates.Command[missions.State]
		want error
	}{
		{"create twice", created, func(id string) aggregates.Command[missions.State] {
			return missions.Create{MissionID: id, IRID: "ir-x", Title: "t", Steps: steps}
		}, missions.ErrMissionExists},
		{"create with duplicate steps", missing, func(id string) aggregates.Command[missions.State] {
			return missions.Create{MissionID: id, IRID: "ir-x", Title: "t", Steps: []governance.Step{steps[0], steps[0]}}
		}, missions.ErrStepsUnique},
		{"create without steps breaks the schema", missing, func(id string) aggregates.Command[missions.State] {
			return missions.Create{MissionID: id, IRID: "ir-x", Title: "t", Steps: []governance.Step{}}
		}, eventstore.ErrValidation},
		{"start a missing mission", missing, func(id string) aggregates.Command[missions.State] { return missions.Start{MissionID: id} }, aggregates.ErrNotFound},
		{"start before validation", created, func(id string) aggregates.Command[missions.State] { return missions.Start{MissionID: id} }, missions.ErrNotValidated},
		{"start a rejected mission", rejected, func(id string) aggregates.Command[missions.State] { return missions.Start{MissionID: id} }, missions.ErrEnded},
		{"start twice", running, func(id string) aggregates.Command[missions.State] { return missions.Start{MissionID: id} }, missions.ErrState},
		{"verdict for another IR", created, func(id string) aggregates.Command[missions.State] {
			return missions.RecordValidation{MissionID: id, IRID: "ir-other", Outcome: governance.OutcomePass}
		}, missions.ErrIRMismatch},
		{"unknown outcome", created, func(id string) aggregates.Command[missions.State] {
			return missions.RecordValidation{MissionID: id, IRID: irOf(t, env, id), Outcome: "maybe"}
		}, missions.ErrUnknownOutcome},
		{"a different second verdict", running, func(id string) aggregates.Command[missions.State] {
			return missions.RecordValidation{MissionID: id, IRID: irOf(t, env, id), Outcome: governance.OutcomeReject}
		}, missions.ErrVerdictChanged},
		{"task before start", created, func(id string) aggregates.Command[missions.State] {
			return missions.CreateTask{MissionID: id, TaskID: uuid.NewString(), StepID: "fetch"}
		}, missions.ErrState},
		{"task for an undeclared step", running, func(id string) aggregates.Command[missions.State] {
			return missions.CreateTask{MissionID: id, TaskID: uuid.NewString(), StepID: "deploy"}
		}, missions.ErrStepNotDeclared},
		{"second task for a step", withTask, func(id string) aggregates.Command[missions.State] {
			return missions.CreateTask{MissionID: id, TaskID: uuid.NewString(), StepID: "fetch"}
		}, missions.ErrTaskTwice},
		{"complete an unknown task", running, func(id string) aggregates.Command[missions.State] {
			return missions.CompleteTask{MissionID: id, TaskID: uuid.NewString()}
		}, missions.ErrUnknownTask},
		{"complete with steps pending", withTask, func(id string) aggregates.Command[missions.State] { return missions.Complete{MissionID: id} }, missions.ErrTasksIncomplete},
		{"fail before start", created, func(id string) aggregates.Command[missions.State] { return missions.Fail{MissionID: id, Reason: "x"} }, missions.ErrState},
		{"fail naming an unknown task", running, func(id string) aggregates.Command[missions.State] {
			return missions.Fail{MissionID: id, Reason: "x", TaskID: uuid.NewString()}
		}, missions.ErrUnknownTask},
		{"cancel a completed mission", completed, func(id string) aggregates.Command[missions.State] { return missions.Cancel{MissionID: id} }, missions.ErrEnded},
		{"cancel twice", cancelled, func(id string) aggregates.Command[missions.State] { return missions.Cancel{MissionID: id} }, missions.ErrEnded},
		{"task after failure", failed, func(id string) aggregates.Command[missions.State] {
			return missions.CreateTask{MissionID: id, TaskID: uuid.NewString(), StepID: "write"}
		}, missions.ErrEnded},
		{"cancel a missing mission", missing, func(id string) aggregates.Command[missions.State] { return missions.Cancel{MissionID: id} }, aggregates.ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := c.from()
			cmd := c.cmd(id)
			before := dt.Head(t, env.Store)
			_, err := env.Missions.Handle(ctx, dt.Meta(), cmd)
			dt.Refused(t, env.Store, before, err, c.want)
		})
	}
}

func irOf(t *testing.T, env *dt.Env, id string) string {
	t.Helper()
	a, err := env.Missions.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return a.State.IRID
}

func TestCompleteTaskTwiceIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, _ := create(t, env, steps)
	do(t, env, validate(t, env, id, governance.OutcomePass))
	do(t, env, missions.Start{MissionID: id})
	task := uuid.NewString()
	do(t, env, missions.CreateTask{MissionID: id, TaskID: task, StepID: "fetch"})
	do(t, env, missions.CompleteTask{MissionID: id, TaskID: task})
	before := dt.Head(t, env.Store)
	_, err := env.Missions.Handle(ctx, dt.Meta(), missions.CompleteTask{MissionID: id, TaskID: task})
	dt.Refused(t, env.Store, before, err, missions.ErrTaskTwice)
}

func TestMissionEndsFailedOrCancelled(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, _ := create(t, env, steps)
	do(t, env, validate(t, env, id, governance.OutcomePass))
	do(t, env, missions.Start{MissionID: id})
	task := uuid.NewString()
	do(t, env, missions.CreateTask{MissionID: id, TaskID: task, StepID: "fetch"})
	res := do(t, env, missions.Fail{MissionID: id, Reason: "timeout", TaskID: task})
	if res.Events[0].Type != missions.TypeFailed || res.Aggregate.State.Status != missions.StatusFailed {
		t.Fatalf("fail: %v", res.Events)
	}
	id2, _ := create(t, env, risky)
	res = do(t, env, missions.Cancel{MissionID: id2, Reason: "changed plans", CancelledBy: "ops"})
	if res.Events[0].Type != missions.TypeCancelled || res.Aggregate.State.Status != missions.StatusCancelled {
		t.Fatalf("cancel: %v", res.Events)
	}
	// A redelivered identical verdict changes nothing.
	id3, _ := create(t, env, []governance.Step{{ID: "mute", Action: "audit.disable", Tier: 0}})
	v := validate(t, env, id3, governance.OutcomeReject)
	if v.Rule != "no-audit-tampering" {
		t.Fatalf("rejected by rule %q", v.Rule)
	}
	do(t, env, v)
	if res := do(t, env, v); len(res.Events) != 0 {
		t.Fatal("a repeated verdict wrote events")
	}
}

// An approval given for one mission is not granted to another mission that
// runs the same IR: one human approval starts one mission.
func TestApprovalForAnotherMissionIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	first, ir := create(t, env, risky)
	second := uuid.NewString()
	do(t, env, missions.Create{MissionID: second, IRID: ir, Title: "Same plan again", Steps: risky, CreatedBy: "ops"})
	for _, id := range []string{first, second} {
		do(t, env, validate(t, env, id, governance.OutcomeEscalate))
	}
	approval := uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: first}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: approval, Token: token}); err != nil {
		t.Fatal(err)
	}
	before := dt.Head(t, env.Store)
	_, err = env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: second, ApprovalID: approval})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalOtherMission)
	_, err = env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: second})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalRequired)

	// The mission it was given for gets it.
	if _, err := env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: first, ApprovalID: approval}); err != nil {
		t.Fatal(err)
	}
	if res := do(t, env, missions.Start{MissionID: first}); res.Aggregate.State.Status != missions.StatusRunning {
		t.Fatalf("state = %+v", res.Aggregate.State)
	}
}

// The mission's own steps decide whether it needs an approval: a verdict
// that understates their tier (pass, max tier 0, for a plan with a tier 2
// step) does not let it start without one. RecordValidation now refuses
// such a verdict (governance escalated the IR); one already in the log,
// recorded before verdicts were checked against governance's, is appended
// here as it was stored.
func TestTier2MissionNeedsAnApprovalWhateverTheVerdictSays(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	id, ir := create(t, env, risky)
	validate(t, env, id, governance.OutcomeEscalate)
	before := dt.Head(t, env.Store)
	_, err := env.Missions.Handle(ctx, dt.Meta(), missions.RecordValidation{MissionID: id, IRID: ir, Outcome: governance.OutcomePass, MaxTier: 0})
	dt.Refused(t, env.Store, before, err, missions.ErrVerdictDisagrees)

	payload, _ := json.Marshal(missions.Validated{MissionID: id, IRID: ir, Outcome: governance.OutcomePass, MaxTier: 0})
	if _, err := env.Store.Append(ctx, "mission-"+id, eventstore.Exact(1), eventstore.Event{
		Type: missions.TypeValidated, Source: missions.Source, Payload: payload,
		Meta: eventstore.Meta{SchemaVersion: 1, TenantID: dt.Meta().TenantID, CorrelationID: "earlier-release"},
	}); err != nil {
		t.Fatal(err)
	}
	if a, _ := env.Missions.Load(ctx, id); a.State.Status != missions.StatusReady {
		t.Fatalf("the stored pass left the mission %s, want ready", a.State.Status)
	}
	before = dt.Head(t, env.Store)
	_, err = env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: id})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalRequired)
}

// escalatedPair creates two missions running the same risky IR, both
// escalated and awaiting an approval.
func escalatedPair(t *testing.T, env *dt.Env) (first, second, ir string) {
	t.Helper()
	first, ir = create(t, env, risky)
	second = uuid.NewString()
	do(t, env, missions.Create{MissionID: second, IRID: ir, Title: "Same plan again", Steps: risky, CreatedBy: "ops"})
	for _, id := range []string{first, second} {
		do(t, env, validate(t, env, id, governance.OutcomeEscalate))
	}
	return first, second, ir
}

// An approval created without a mission, consumed without naming one,
// authorises no mission: otherwise its one consumption granted every
// mission of the tenant that runs the IR, one after the other.
func TestApprovalConsumedForNoMissionStartsNone(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	first, second, ir := escalatedPair(t, env)
	approval := uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: approval, IRID: ir}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: approval, Token: token}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{first, second} {
		before := dt.Head(t, env.Store)
		_, err := env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: id, ApprovalID: approval})
		dt.Refused(t, env.Store, before, err, missions.ErrApprovalOtherMission)
		_, err = env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: id})
		dt.Refused(t, env.Store, before, err, missions.ErrApprovalRequired)
	}
}

// An approval created without a mission is bound, when consumed, to the
// mission its consumer names: that mission gets it, and no other.
func TestApprovalConsumedForAMissionStartsThatOneOnly(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	first, second, ir := escalatedPair(t, env)
	approval := uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: approval, IRID: ir}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	res, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: approval, Token: token, MissionID: first})
	if err != nil {
		t.Fatal(err)
	}
	if s := res.Aggregate.State; s.MissionID != first {
		t.Fatalf("the consumed approval names mission %q, want %s", s.MissionID, first)
	}
	before := dt.Head(t, env.Store)
	_, err = env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: second, ApprovalID: approval})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalOtherMission)
	if _, err := env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: first, ApprovalID: approval}); err != nil {
		t.Fatal(err)
	}
	if res := do(t, env, missions.Start{MissionID: first}); res.Aggregate.State.Status != missions.StatusRunning {
		t.Fatalf("state = %+v", res.Aggregate.State)
	}
	before = dt.Head(t, env.Store)
	_, err = env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: second})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalRequired)
}

// A mission is its tenant's. Another tenant could approve it with an
// approval of its own for the mission's IR (the grant compared the
// approval's tenant with the caller's, never with the mission's), and so
// start a tier-2 mission no human of its tenant approved; and it could
// cancel, start or record verdicts on it. Each is refused, writes nothing
// and returns nothing of the mission.
func TestAnotherTenantCannotApproveOrDriveAMission(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	id, ir := create(t, env, risky)
	do(t, env, validate(t, env, id, governance.OutcomeEscalate))
	t2 := aggregates.CommandMeta{TenantID: "t2"}

	approval := uuid.NewString()
	t2Fresh := aggregates.CommandMeta{TenantID: "t2"}
	token, _, err := env.Governance.CreateApproval(ctx, t2Fresh, governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: id}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, t2Fresh, governance.ConsumeApproval{ApprovalID: approval, Token: token}); err != nil {
		t.Fatal(err)
	}
	before := dt.Head(t, env.Store)
	res, err := env.Missions.GrantApproval(ctx, t2, missions.GrantApproval{MissionID: id, ApprovalID: approval})
	dt.Refused(t, env.Store, before, err, missions.ErrMissionTenant)
	if res.Aggregate != nil {
		t.Fatalf("the refusal returned the mission: %+v", res.Aggregate.State)
	}
	// Nor may the mission's tenant take the other tenant's approval, which
	// is, to it, one that does not exist.
	_, err = env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: id, ApprovalID: approval})
	dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)
	_, err = env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: id})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalRequired)

	for _, c := range []aggregates.Command[missions.State]{
		missions.Start{MissionID: id},
		missions.Cancel{MissionID: id, Reason: "sabotage"},
		missions.RecordValidation{MissionID: id, IRID: ir, Outcome: governance.OutcomeEscalate, MaxTier: 2},
		missions.Create{MissionID: id, IRID: ir, Title: "x", Steps: risky},
	} {
		res, err := env.Missions.Handle(ctx, t2, c)
		dt.Refused(t, env.Store, before, err, missions.ErrMissionTenant)
		if res.Aggregate != nil || strings.Contains(err.Error(), ir) || strings.Contains(err.Error(), string(missions.StatusAwaitingApproval)) {
			t.Fatalf("%T: the refusal tells another tenant about the mission: %v, %+v", c, err, res.Aggregate)
		}
	}
	if a, _ := env.Missions.Load(ctx, id); a.State.Status != missions.StatusAwaitingApproval {
		t.Fatalf("state = %+v", a.State)
	}
}

// settle delivers the log to the reactions until it stops growing.
func settle(t *testing.T, env *dt.Env, r *reactions.Reactions) {
	t.Helper()
	from := eventstore.Position{}
	for range 20 {
		page, err := env.Store.ReadAll(ctx, eventstore.ReadAllOptions{From: from})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			return
		}
		for _, e := range page.Events {
			if err := r.Handle(ctx, e); err != nil {
				t.Fatalf("handle %s: %v", e.Type, err)
			}
		}
		from = page.Next
	}
	t.Fatal("the reactions did not settle")
}

// A second mission created on an IR governance already validated gets its
// verdict through the reactions, as the first did; it waited in created
// forever, since validating the same IR again wrote nothing.
func TestSecondMissionOnAValidatedIRGetsItsVerdict(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	r, err := reactions.New(env.Services, reactions.Config{StagingBaseURL: "https://staging.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	first, ir := create(t, env, steps)
	settle(t, env, r)
	second := uuid.NewString()
	do(t, env, missions.Create{MissionID: second, IRID: ir, Title: "Same plan again", Steps: steps, CreatedBy: "ops"})
	settle(t, env, r)
	for _, id := range []string{first, second} {
		a, err := env.Missions.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if a.State.Status != missions.StatusReady {
			t.Fatalf("mission %s is %s, want ready", id, a.State.Status)
		}
	}
}

// refusedVerdict checks that c is refused with want, that the log did not
// move, and that the mission is still created: it cannot start.
func refusedVerdict(t *testing.T, env *dt.Env, c missions.RecordValidation, want error) {
	t.Helper()
	before := dt.Head(t, env.Store)
	events := dt.Types(t, env.Store, "mission-"+c.MissionID)
	_, err := env.Missions.Handle(ctx, dt.Meta(), c)
	dt.Refused(t, env.Store, before, err, want)
	var re *aggregates.RuleError
	if !errors.As(err, &re) {
		t.Fatalf("%v is not a *aggregates.RuleError", err)
	}
	if got := dt.Types(t, env.Store, "mission-"+c.MissionID); !slices.Equal(got, events) {
		t.Fatalf("the mission's stream went from %v to %v", events, got)
	}
	_, err = env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: c.MissionID})
	dt.Refused(t, env.Store, before, err, missions.ErrNotValidated)
}

// A mission's verdict is governance's: its tenant cannot record "pass"
// for an IR governance rejected by a policy rule (a plan of tiers 0 and 1,
// which the tier gate of Start does not stop). Before, the caller's
// verdict was recorded and the mission started.
func TestPassForARejectedIRIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	id, ir := create(t, env, forbidden)
	truth := validate(t, env, id, governance.OutcomeReject)
	for _, c := range []missions.RecordValidation{
		{MissionID: id, IRID: ir, Outcome: governance.OutcomePass},
		{MissionID: id, IRID: ir, Outcome: governance.OutcomePass, MaxTier: 1},
		{MissionID: id, IRID: ir, Outcome: governance.OutcomeEscalate, MaxTier: 2},
		{MissionID: id, IRID: ir, Outcome: governance.OutcomeReject, Rule: "another-rule"},
	} {
		refusedVerdict(t, env, c, missions.ErrVerdictDisagrees)
	}
	// Governance's verdict is recorded, and ends the mission.
	res := do(t, env, truth)
	if s := res.Aggregate.State; s.Status != missions.StatusRejected || s.EndReason != "no-tenant-deletion" {
		t.Fatalf("state = %+v", s)
	}
	before := dt.Head(t, env.Store)
	_, err := env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: id})
	dt.Refused(t, env.Store, before, err, missions.ErrEnded)
}

// Nor can it record "pass" for an IR governance escalated: the mission
// stays created, and waits for governance's verdict (then an approval).
func TestPassForAnEscalatedIRIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	id, ir := create(t, env, risky)
	truth := validate(t, env, id, governance.OutcomeEscalate)
	for _, c := range []missions.RecordValidation{
		{MissionID: id, IRID: ir, Outcome: governance.OutcomePass},
		{MissionID: id, IRID: ir, Outcome: governance.OutcomePass, MaxTier: 2},
		{MissionID: id, IRID: ir, Outcome: governance.OutcomeEscalate, MaxTier: 1}, // understated tier
		{MissionID: id, IRID: ir, Outcome: governance.OutcomeReject, Rule: "no-tenant-deletion"},
	} {
		refusedVerdict(t, env, c, missions.ErrVerdictDisagrees)
	}
	if res := do(t, env, truth); res.Aggregate.State.Status != missions.StatusAwaitingApproval {
		t.Fatalf("state = %+v", res.Aggregate.State)
	}
	before := dt.Head(t, env.Store)
	_, err := env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: id})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalRequired)
}

// A verdict governance has not recorded for the mission is refused with
// ErrVerdictNotRecorded, whatever it says: for an IR governance never
// validated, validated without naming this mission, or validated for
// another tenant (of which the refusal says nothing).
func TestVerdictGovernanceNeverRecordedIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	outcomes := []missions.RecordValidation{
		{Outcome: governance.OutcomePass},
		{Outcome: governance.OutcomePass, MaxTier: 1},
		{Outcome: governance.OutcomeEscalate, MaxTier: 2},
		{Outcome: governance.OutcomeReject, Rule: "no-tenant-deletion"},
	}
	each := func(id, ir string, check func(err error)) {
		t.Helper()
		for _, c := range outcomes {
			c.MissionID, c.IRID = id, ir
			refusedVerdict(t, env, c, missions.ErrVerdictNotRecorded)
			if check != nil {
				_, err := env.Missions.Handle(ctx, dt.Meta(), c)
				check(err)
			}
		}
	}

	// Never validated.
	id, ir := create(t, env, steps)
	each(id, ir, nil)

	// Validated, but for no mission.
	if _, err := env.Governance.ValidateIR(ctx, dt.Meta(), governance.ValidateIR{IR: governance.IR{ID: ir, Steps: steps}}); err != nil {
		t.Fatal(err)
	}
	each(id, ir, nil)
	// Validated for another mission on the same plan.
	other := uuid.NewString()
	do(t, env, missions.Create{MissionID: other, IRID: ir, Title: "Same plan again", Steps: steps, CreatedBy: "ops"})
	validate(t, env, other, governance.OutcomePass)
	each(id, ir, nil)
	// Once governance records it for the mission, its verdict is.
	do(t, env, validate(t, env, id, governance.OutcomePass))

	// The IR id was validated for another tenant, for this mission id.
	irT2 := "ir-" + uuid.NewString()
	id2 := uuid.NewString()
	if _, err := env.Governance.ValidateIR(ctx, aggregates.CommandMeta{TenantID: "t2"}, governance.ValidateIR{IR: governance.IR{ID: irT2, Steps: forbidden}, MissionID: id2}); err != nil {
		t.Fatal(err)
	}
	do(t, env, missions.Create{MissionID: id2, IRID: irT2, Title: "Nightly sync", Steps: forbidden, CreatedBy: "ops"})
	each(id2, irT2, func(err error) {
		if msg := err.Error(); strings.Contains(msg, "reject") || strings.Contains(msg, "t2") || strings.Contains(msg, "tenant.delete") {
			t.Fatalf("the refusal tells of the other tenant's IR: %v", err)
		}
	})
}

// The verdict binds the plan: governance's verdict on an IR id is recorded
// only for a mission whose steps hash as the plan governance validated. A
// mission that names a passed IR but runs another plan (a forbidden step
// added) cannot take its "pass", even once governance recorded the verdict
// for it (validating the passed plan again, naming that mission).
func TestVerdictForAnotherPlanIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	first, ir := create(t, env, steps)
	truth := validate(t, env, first, governance.OutcomePass)
	do(t, env, truth)

	second := uuid.NewString()
	do(t, env, missions.Create{MissionID: second, IRID: ir, Title: "Same id, other plan", Steps: forbidden, CreatedBy: "ops"})
	// Its own plan cannot be validated under the IR id.
	_, err := env.Governance.ValidateIR(ctx, dt.Meta(), governance.ValidateIR{IR: governance.IR{ID: ir, Steps: forbidden}, MissionID: second})
	if !errors.Is(err, governance.ErrIRChanged) {
		t.Fatalf("ValidateIR of another plan under the IR id: %v, want %v", err, governance.ErrIRChanged)
	}
	// The validated plan can, naming the mission: governance's record
	// then lists it, with the validated plan's hash.
	if _, err := env.Governance.ValidateIR(ctx, dt.Meta(), governance.ValidateIR{IR: governance.IR{ID: ir, Steps: steps}, MissionID: second}); err != nil {
		t.Fatal(err)
	}
	c := truth
	c.MissionID = second
	refusedVerdict(t, env, c, missions.ErrIRMismatch)
}

// The normal path runs through the reactions, end to end: mission.created
// → governance validates the IR → ir.validated_* → the mission records the
// verdict; a passed mission starts, an escalated one starts after a
// consumed approval, a rejected one ends. Each event is delivered twice.
func TestVerdictsThroughTheReactions(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	r, err := reactions.New(env.Services, reactions.Config{StagingBaseURL: "https://staging.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	passed, _ := create(t, env, steps)
	escalated, ir := create(t, env, risky)
	rejected, _ := create(t, env, forbidden)
	settle(t, env, r)
	settle(t, env, r) // everything again: the same verdicts are no-ops
	status := func(id string) missions.State {
		t.Helper()
		a, err := env.Missions.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return a.State
	}
	if s := status(passed); s.Status != missions.StatusReady || s.Outcome != governance.OutcomePass || s.MaxTier != 1 {
		t.Fatalf("passed mission: %+v", s)
	}
	if s := status(escalated); s.Status != missions.StatusAwaitingApproval || s.MaxTier != 2 {
		t.Fatalf("escalated mission: %+v", s)
	}
	if s := status(rejected); s.Status != missions.StatusRejected || s.EndReason != "no-tenant-deletion" {
		t.Fatalf("rejected mission: %+v", s)
	}

	do(t, env, missions.Start{MissionID: passed})
	runAll(t, env, passed, steps)
	do(t, env, missions.Complete{MissionID: passed})

	before := dt.Head(t, env.Store)
	_, err = env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: escalated})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalRequired)
	approval := uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: escalated}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: approval, Token: token}); err != nil {
		t.Fatal(err)
	}
	settle(t, env, r)
	if s := status(escalated); s.Status != missions.StatusReady || s.ApprovalID != approval {
		t.Fatalf("approved mission: %+v", s)
	}
	do(t, env, missions.Start{MissionID: escalated})
	runAll(t, env, escalated, risky)
	do(t, env, missions.Complete{MissionID: escalated})

	before = dt.Head(t, env.Store)
	_, err = env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: rejected})
	dt.Refused(t, env.Store, before, err, missions.ErrEnded)
}

// forgeVerdict appends a mission.validated to the mission's stream as
// stored, past RecordValidation: as a release before verdicts were checked
// against governance's wrote it, or as a tenant can append it raw into its
// own stream (the HTTP API checks who owns a stream, not which event types
// it writes).
func forgeVerdict(t *testing.T, env *dt.Env, id, ir, outcome string, maxTier int) {
	t.Helper()
	payload, _ := json.Marshal(missions.Validated{MissionID: id, IRID: ir, Outcome: outcome, MaxTier: maxTier})
	if _, err := env.Store.Append(ctx, "mission-"+id, eventstore.Exact(1), eventstore.Event{
		Type: missions.TypeValidated, Source: missions.Source, Payload: payload,
		Meta: eventstore.Meta{SchemaVersion: 1, TenantID: dt.Meta().TenantID, CorrelationID: "forged"},
	}); err != nil {
		t.Fatal(err)
	}
	if a, _ := env.Missions.Load(ctx, id); a.State.Status != missions.StatusReady {
		t.Fatalf("the stored %s left the mission %s, want ready", outcome, a.State.Status)
	}
}

// refusedStart checks that Start is refused with want, as a
// *aggregates.RuleError, and that neither the log nor the mission's stream
// moved.
func refusedStart(t *testing.T, env *dt.Env, id string, want error) {
	t.Helper()
	before := dt.Head(t, env.Store)
	events := dt.Types(t, env.Store, "mission-"+id)
	_, err := env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: id})
	dt.Refused(t, env.Store, before, err, want)
	var re *aggregates.RuleError
	if !errors.As(err, &re) {
		t.Fatalf("%v is not a *aggregates.RuleError", err)
	}
	if got := dt.Types(t, env.Store, "mission-"+id); !slices.Equal(got, events) {
		t.Fatalf("the mission's stream went from %v to %v", events, got)
	}
	if a, _ := env.Missions.Load(ctx, id); a.State.Status != missions.StatusReady {
		t.Fatalf("the mission is %s, want ready", a.State.Status)
	}
}

// A "pass" in the mission's stream for an IR governance rejected (a plan
// of tiers 0 and 1, which the tier gate does not stop) does not start the
// mission: Start checks the stream's verdict against governance's. Before,
// Start read the stream only, and the forbidden plan ran.
func TestStoredPassForARejectedIRDoesNotStart(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	id, ir := create(t, env, forbidden)
	validate(t, env, id, governance.OutcomeReject)
	forgeVerdict(t, env, id, ir, governance.OutcomePass, 1)
	refusedStart(t, env, id, missions.ErrVerdictDisagrees)
}

// Nor one for an IR governance never validated for the mission: never
// validated at all, validated for no mission or for another one only,
// validated for another tenant, or validated for another plan under the
// same IR id.
func TestStoredPassGovernanceNeverRecordedDoesNotStart(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)

	// Never validated.
	id, ir := create(t, env, steps)
	forgeVerdict(t, env, id, ir, governance.OutcomePass, 1)
	refusedStart(t, env, id, missions.ErrVerdictNotRecorded)

	// Validated, but for no mission.
	if _, err := env.Governance.ValidateIR(ctx, dt.Meta(), governance.ValidateIR{IR: governance.IR{ID: ir, Steps: steps}}); err != nil {
		t.Fatal(err)
	}
	refusedStart(t, env, id, missions.ErrVerdictNotRecorded)

	// Validated for another mission on the same plan only.
	other := uuid.NewString()
	do(t, env, missions.Create{MissionID: other, IRID: ir, Title: "Same plan again", Steps: steps, CreatedBy: "ops"})
	validate(t, env, other, governance.OutcomePass)
	refusedStart(t, env, id, missions.ErrVerdictNotRecorded)

	// The IR id was validated for another tenant, for this mission id.
	irT2, id2 := "ir-"+uuid.NewString(), uuid.NewString()
	if _, err := env.Governance.ValidateIR(ctx, aggregates.CommandMeta{TenantID: "t2"}, governance.ValidateIR{IR: governance.IR{ID: irT2, Steps: steps}, MissionID: id2}); err != nil {
		t.Fatal(err)
	}
	do(t, env, missions.Create{MissionID: id2, IRID: irT2, Title: "Nightly sync", Steps: steps, CreatedBy: "ops"})
	forgeVerdict(t, env, id2, irT2, governance.OutcomePass, 1)
	refusedStart(t, env, id2, missions.ErrVerdictNotRecorded)

	// A mission running a forbidden plan under a passed IR's id, which
	// governance recorded for it (validating the passed plan, naming it).
	third := uuid.NewString()
	do(t, env, missions.Create{MissionID: third, IRID: ir, Title: "Same id, other plan", Steps: forbidden, CreatedBy: "ops"})
	if _, err := env.Governance.ValidateIR(ctx, dt.Meta(), governance.ValidateIR{IR: governance.IR{ID: ir, Steps: steps}, MissionID: third}); err != nil {
		t.Fatal(err)
	}
	forgeVerdict(t, env, third, ir, governance.OutcomePass, 1)
	refusedStart(t, env, third, missions.ErrIRMismatch)

	// Once governance records the verdict for the first mission, the
	// stored one (governance's own) starts it.
	validate(t, env, id, governance.OutcomePass)
	if res := do(t, env, missions.Start{MissionID: id}); res.Aggregate.State.Status != missions.StatusRunning {
		t.Fatalf("state = %+v", res.Aggregate.State)
	}
}

// A verdict stored before verdicts were checked that is governance's own
// still starts its mission: only the verdicts governance did not give are
// refused.
func TestStoredVerdictGovernanceRecordedStarts(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, ir := create(t, env, steps)
	v := validate(t, env, id, governance.OutcomePass)
	forgeVerdict(t, env, id, ir, v.Outcome, v.MaxTier)
	res := do(t, env, missions.Start{MissionID: id})
	if s := res.Aggregate.State; s.Status != missions.StatusRunning {
		t.Fatalf("state = %+v", s)
	}
	runAll(t, env, id, steps)
	do(t, env, missions.Complete{MissionID: id})
}

// forgeGrant appends a mission.approval_granted naming approval to the
// escalated mission's stream, past GrantApproval, as its tenant can append
// it raw into its own stream (the HTTP API checks who owns a stream, not
// which event types it writes).
func forgeGrant(t *testing.T, env *dt.Env, id, approval string) {
	t.Helper()
	a, err := env.Missions.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if a.State.Status != missions.StatusAwaitingApproval {
		t.Fatalf("the mission is %s, want awaiting_approval", a.State.Status)
	}
	payload, _ := json.Marshal(missions.ApprovalGranted{MissionID: id, IRID: a.State.IRID, ApprovalID: approval})
	if _, err := env.Store.Append(ctx, "mission-"+id, eventstore.Exact(a.Version), eventstore.Event{
		Type: missions.TypeApprovalGranted, Source: missions.Source, Payload: payload,
		Meta: eventstore.Meta{SchemaVersion: 1, TenantID: dt.Meta().TenantID, CorrelationID: "forged"},
	}); err != nil {
		t.Fatal(err)
	}
	if a, _ := env.Missions.Load(ctx, id); a.State.Status != missions.StatusReady || a.State.ApprovalID != approval {
		t.Fatalf("the stored grant left the mission %+v, want ready with approval %s", a.State, approval)
	}
}

// escalated creates a mission running the risky IR, escalated by
// governance and awaiting an approval.
func escalated(t *testing.T, env *dt.Env) (id, ir string) {
	t.Helper()
	id, ir = create(t, env, risky)
	do(t, env, validate(t, env, id, governance.OutcomeEscalate))
	return id, ir
}

// An approval grant in an escalated mission's stream that governance never
// consumed for it does not start the mission: an approval that does not
// exist, or one created for the mission but never consumed. Start checks
// the approval the stream names with governance, as GrantApproval does.
// Before, Start trusted the stream's grant, and the tier 2 mission ran
// without a human approval.
func TestForgedApprovalGrantDoesNotStart(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)

	// An approval governance never created.
	id, _ := escalated(t, env)
	forgeGrant(t, env, id, uuid.NewString())
	refusedStart(t, env, id, missions.ErrApprovalNotConsumed)

	// One created for the mission, never consumed.
	id, ir := escalated(t, env)
	approval := uuid.NewString()
	if _, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: id}, time.Hour); err != nil {
		t.Fatal(err)
	}
	forgeGrant(t, env, id, approval)
	refusedStart(t, env, id, missions.ErrApprovalNotConsumed)
}

// Nor does a consumed approval the mission was not given: one consumed
// for another mission on the same IR, for no mission, for another IR, or
// another tenant's.
func TestForgedGrantOfAnotherMissionsApprovalDoesNotStart(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	consumed := func(meta aggregates.CommandMeta, ir, mission string) string {
		t.Helper()
		approval := uuid.NewString()
		token, _, err := env.Governance.CreateApproval(ctx, meta, governance.CreateApproval{ApprovalID: approval, IRID: ir}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Governance.ConsumeApproval(ctx, meta, governance.ConsumeApproval{ApprovalID: approval, Token: token, MissionID: mission}); err != nil {
			t.Fatal(err)
		}
		return approval
	}

	// Consumed for another mission running the same IR.
	first, second, ir := escalatedPair(t, env)
	forFirst := consumed(dt.Meta(), ir, first)
	forgeGrant(t, env, second, forFirst)
	refusedStart(t, env, second, missions.ErrApprovalOtherMission)

	// Consumed for no mission.
	id, ir2 := escalated(t, env)
	forgeGrant(t, env, id, consumed(dt.Meta(), ir2, ""))
	refusedStart(t, env, id, missions.ErrApprovalOtherMission)

	// Consumed for this mission id but another IR.
	id, _ = escalated(t, env)
	forgeGrant(t, env, id, consumed(dt.Meta(), "ir-"+uuid.NewString(), id))
	refusedStart(t, env, id, missions.ErrIRMismatch)

	// Another tenant's, consumed for this mission and IR.
	id, ir3 := escalated(t, env)
	forgeGrant(t, env, id, consumed(aggregates.CommandMeta{TenantID: "t2"}, ir3, id))
	refusedStart(t, env, id, missions.ErrApprovalNotConsumed)

	// The approval consumed for the first mission, granted to it, still
	// starts it.
	if _, err := env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: first, ApprovalID: forFirst}); err != nil {
		t.Fatal(err)
	}
	if res := do(t, env, missions.Start{MissionID: first}); res.Aggregate.State.Status != missions.StatusRunning || res.Aggregate.State.ApprovalID != forFirst {
		t.Fatalf("state = %+v", res.Aggregate.State)
	}
}

// A command id is no secret a tenant keeps: another tenant that sends a
// command with the id of one that landed on a mission (a client's
// idempotency key derived from something both know, or a reused one) is
// refused as any other tenant's command is, and learns nothing of the
// mission. Before, the landed-command check answered it with
// ErrCommandReused and the mission as loaded: its tenant, IR, plan and
// status.
func TestAnotherTenantReusingALandedCommandIDLearnsNothing(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, ir := create(t, env, risky)
	do(t, env, validate(t, env, id, governance.OutcomeEscalate))
	cmd := dt.Meta()
	cmd.ID = uuid.New()
	if _, err := env.Missions.Handle(ctx, cmd, missions.Cancel{MissionID: id, Reason: "not needed"}); err != nil {
		t.Fatal(err)
	}
	t2 := aggregates.CommandMeta{TenantID: "t2", ID: cmd.ID}
	refused := func(what string, res aggregates.Result[missions.State], err error, before eventstore.Position) {
		t.Helper()
		dt.Refused(t, env.Store, before, err, missions.ErrMissionTenant)
		if errors.Is(err, aggregates.ErrCommandReused) || res.Aggregate != nil || len(res.Events) != 0 || strings.Contains(err.Error(), ir) {
			t.Fatalf("%s: the refusal tells another tenant about the mission: %v, %+v", what, err, res.Aggregate)
		}
	}
	for _, c := range []aggregates.Command[missions.State]{
		missions.Cancel{MissionID: id, Reason: "not needed"},
		missions.Create{MissionID: id, IRID: ir, Title: "Nightly sync", Steps: risky, CreatedBy: "ops"},
	} {
		before := dt.Head(t, env.Store)
		res, err := env.Missions.Handle(ctx, t2, c)
		refused(fmt.Sprintf("%T", c), res, err, before)
	}

	// Nor through GrantApproval, with an approval of its own.
	approval := uuid.NewString()
	t2Fresh := aggregates.CommandMeta{TenantID: "t2"}
	token, _, err := env.Governance.CreateApproval(ctx, t2Fresh, governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: id}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, t2Fresh, governance.ConsumeApproval{ApprovalID: approval, Token: token}); err != nil {
		t.Fatal(err)
	}
	before := dt.Head(t, env.Store)
	res, err := env.Missions.GrantApproval(ctx, t2, missions.GrantApproval{MissionID: id, ApprovalID: approval})
	refused("GrantApproval", res, err, before)

	// The mission's own tenant retrying its Cancel still gets its result.
	res, err = env.Missions.Handle(ctx, cmd, missions.Cancel{MissionID: id, Reason: "not needed"})
	if err != nil || len(res.Events) != 1 || res.Events[0].Type != missions.TypeCancelled {
		t.Fatalf("the retried Cancel: %v, %v", err, res.Events)
	}
}

// Text that is not valid UTF-8 cannot be stored as it is: the JSON payload
// holds U+FFFD for each bad byte. Two step ids that differ only in their
// bad bytes passed mission-steps-unique and were stored as the same id, so
// the mission read back from the log ran one step twice in its plan (one
// task, completed once, completed both); and a title read back differed
// from the one the command's result held. Such text is refused, and
// nothing is written.
func TestTextThatIsNotUTF8IsRefused(t *testing.T) {
	t.Parallel()
	for _, b := range dt.Backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, b, domain.Options{})
			refused := func(c aggregates.Command[missions.State]) {
				t.Helper()
				before := dt.Head(t, env.Store)
				_, err := env.Missions.Handle(ctx, dt.Meta(), c)
				dt.Refused(t, env.Store, before, err, missions.ErrTextEncoding)
			}
			for _, c := range []missions.Create{
				{Title: "Nightly sync", Steps: []governance.Step{{ID: "a\xff", Action: "http.get"}, {ID: "a\xfe", Action: "http.get"}}},
				{Title: "Nightly \xffsync", Steps: steps},
				{Title: "Nightly sync", Steps: steps, CreatedBy: "op\xc3"},
			} {
				c.MissionID, c.IRID = uuid.NewString(), "ir-"+uuid.NewString()
				refused(c)
				if got := dt.Types(t, env.Store, "mission-"+c.MissionID); got != nil {
					t.Fatalf("the refused mission has events %v", got)
				}
			}
			id, _ := create(t, env, steps)
			refused(missions.Cancel{MissionID: id, Reason: "changed \xe2\x82 plans"})
			refused(missions.Cancel{MissionID: id, CancelledBy: "\xffops"})
			do(t, env, validate(t, env, id, governance.OutcomePass))
			do(t, env, missions.Start{MissionID: id})
			refused(missions.Fail{MissionID: id, Reason: "upstream \xff down"})
		})
	}
}

// A mission's title and an end's reason must show something, as the
// other modules' titles must: text of only white space or invisible
// characters, which the schemas' minLength counts, is refused with
// text-not-blank. Before, such a title or reason was stored, and a Fail
// without a reason, which the aggregate accepted, was refused by the
// schema of mission.failed as a validation error instead of a rule.
func TestBlankTextIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	refused := func(c aggregates.Command[missions.State]) {
		t.Helper()
		before := dt.Head(t, env.Store)
		_, err := env.Missions.Handle(ctx, dt.Meta(), c)
		dt.Refused(t, env.Store, before, err, missions.ErrBlank)
		var re *aggregates.RuleError
		if !errors.As(err, &re) {
			t.Fatalf("%v is not a *aggregates.RuleError", err)
		}
	}
	for _, title := range []string{"", "   ", "\u200b", " \u00a0\t"} {
		refused(missions.Create{MissionID: uuid.NewString(), IRID: "ir-" + uuid.NewString(), Title: title, Steps: steps})
	}
	id, _ := create(t, env, steps)
	refused(missions.Cancel{MissionID: id, Reason: " \u200b "})
	do(t, env, validate(t, env, id, governance.OutcomePass))
	do(t, env, missions.Start{MissionID: id})
	for _, reason := range []string{"", " ", "\ufeff"} {
		refused(missions.Fail{MissionID: id, Reason: reason})
	}
	// A Cancel may give no reason at all.
	if res := do(t, env, missions.Cancel{MissionID: id}); res.Aggregate.State.Status != missions.StatusCancelled {
		t.Fatalf("state = %+v", res.Aggregate.State)
	}
}

// GrantApproval is an aggregates.Command[State] like the others, so it can
// be given to Service.Handle. There it was decided without governance's
// record of the approval nor the caller's tenant, and the mission's own
// tenant was refused with mission-tenant, told the mission was another
// tenant's. Handle now grants it as Service.GrantApproval does, value or
// pointer.
func TestGrantApprovalThroughHandle(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	for _, asPointer := range []bool{false, true} {
		id, ir := escalated(t, env)
		approval := uuid.NewString()
		token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: id}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		grant := missions.GrantApproval{MissionID: id, ApprovalID: approval}
		var c aggregates.Command[missions.State] = grant
		if asPointer {
			c = &grant
		}
		// Not consumed yet: refused as GrantApproval refuses it.
		before := dt.Head(t, env.Store)
		_, err = env.Missions.Handle(ctx, dt.Meta(), c)
		dt.Refused(t, env.Store, before, err, missions.ErrApprovalNotConsumed)
		if _, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: approval, Token: token}); err != nil {
			t.Fatal(err)
		}
		// Another tenant's call is still refused, and learns nothing.
		before = dt.Head(t, env.Store)
		res, err := env.Missions.Handle(ctx, aggregates.CommandMeta{TenantID: "t2"}, c)
		dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)
		if res.Aggregate != nil {
			t.Fatalf("the refusal returned the mission: %+v", res.Aggregate.State)
		}
		res = do(t, env, c)
		if len(res.Events) != 1 || res.Events[0].Type != missions.TypeApprovalGranted || res.Aggregate.State.ApprovalID != approval {
			t.Fatalf("pointer %v: grant wrote %v, state %+v", asPointer, res.Events, res.Aggregate.State)
		}
		if res := do(t, env, missions.Start{MissionID: id}); res.Aggregate.State.Status != missions.StatusRunning {
			t.Fatalf("state = %+v", res.Aggregate.State)
		}
	}
}

// A mission fails because of a task only if that task has not completed:
// mission.failed names "the task that failed", and a task recorded as
// completed did not. Before, the log could say a task both completed and
// failed the mission. A failure naming an open task, or none, still ends
// the mission.
func TestFailNamingACompletedTaskIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, _ := create(t, env, steps)
	do(t, env, validate(t, env, id, governance.OutcomePass))
	do(t, env, missions.Start{MissionID: id})
	done, open := uuid.NewString(), uuid.NewString()
	do(t, env, missions.CreateTask{MissionID: id, TaskID: done, StepID: "fetch"})
	do(t, env, missions.CompleteTask{MissionID: id, TaskID: done})
	do(t, env, missions.CreateTask{MissionID: id, TaskID: open, StepID: "write"})
	before := dt.Head(t, env.Store)
	_, err := env.Missions.Handle(ctx, dt.Meta(), missions.Fail{MissionID: id, Reason: "timeout", TaskID: done})
	dt.Refused(t, env.Store, before, err, missions.ErrTaskCompleted)
	res := do(t, env, missions.Fail{MissionID: id, Reason: "timeout", TaskID: open})
	if s := res.Aggregate.State; s.Status != missions.StatusFailed || s.EndReason != "timeout" {
		t.Fatalf("state = %+v", s)
	}
}

// A tenant naming another tenant's approval learns nothing, not even that
// it exists: GrantApproval answers it exactly as an approval governance
// never created (the same error, an empty result), and a grant naming it
// in the mission's stream stops Start exactly as one naming an approval
// that does not exist. Before, both were refused with
// approval-same-tenant, which told the caller the id was an approval.
func TestAnotherTenantsApprovalIsAnsweredAsUnknown(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	type answer struct {
		Err    string
		Result aggregates.Result[missions.State]
	}
	mask := func(err error, ids ...string) string {
		s := err.Error()
		for _, id := range ids {
			s = strings.ReplaceAll(s, id, "<id>")
		}
		return s
	}
	grant := func(id, approval string) answer {
		t.Helper()
		before := dt.Head(t, env.Store)
		res, err := env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: id, ApprovalID: approval})
		dt.Refused(t, env.Store, before, err, aggregates.ErrNotFound)
		return answer{mask(err, approval), res}
	}
	start := func(id, approval string) string {
		t.Helper()
		forgeGrant(t, env, id, approval)
		before := dt.Head(t, env.Store)
		_, err := env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: id})
		dt.Refused(t, env.Store, before, err, missions.ErrApprovalNotConsumed)
		return mask(err, approval, id)
	}

	// t2's approval for t1's mission and IR, consumed for that mission.
	id, ir := escalated(t, env)
	t2 := aggregates.CommandMeta{TenantID: "t2"}
	theirs := uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, t2, governance.CreateApproval{ApprovalID: theirs, IRID: ir, MissionID: id}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, t2, governance.ConsumeApproval{ApprovalID: theirs, Token: token}); err != nil {
		t.Fatal(err)
	}
	if got, want := grant(id, theirs), grant(id, uuid.NewString()); !reflect.DeepEqual(got, want) {
		t.Fatalf("GrantApproval of another tenant's approval answered\n%+v\nnot as an unknown one's\n%+v", got, want)
	}
	other, _ := escalated(t, env)
	if got, want := start(id, theirs), start(other, uuid.NewString()); got != want {
		t.Fatalf("Start with another tenant's approval refused\n%s\nnot as with an unknown one\n%s", got, want)
	}
}

// An approval consumed before governance's verdict reached the mission is
// granted while the mission is created; the escalate verdict then makes
// it ready. Before, the grant was refused with mission-state, and the
// mission, once escalated, waited for an approval already consumed. A
// mission still takes one approval, a consumed one, and a verdict of
// reject still ends it.
func TestApprovalGrantedBeforeTheVerdict(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	id, ir := create(t, env, risky)
	newApproval := func() (string, string) {
		t.Helper()
		approval := uuid.NewString()
		token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: id, RequestedBy: "planner"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return approval, token
	}
	consume := func(approval, token string) {
		t.Helper()
		if _, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: approval, Token: token, ConsumedBy: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	approval, token := newApproval()
	before := dt.Head(t, env.Store)
	_, err := env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: id, ApprovalID: approval})
	dt.Refused(t, env.Store, before, err, missions.ErrApprovalNotConsumed)

	consume(approval, token)
	res, err := env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: id, ApprovalID: approval})
	if err != nil {
		t.Fatalf("grant before the verdict: %v", err)
	}
	if s := res.Aggregate.State; s.Status != missions.StatusCreated || s.ApprovalID != approval {
		t.Fatalf("after the grant: %s with approval %q, want created with %s", s.Status, s.ApprovalID, approval)
	}
	// One approval per mission: another consumed one is refused.
	other, otherToken := newApproval()
	consume(other, otherToken)
	before = dt.Head(t, env.Store)
	_, err = env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: id, ApprovalID: other})
	dt.Refused(t, env.Store, before, err, missions.ErrState)
	// The grant is not a verdict.
	_, err = env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: id})
	dt.Refused(t, env.Store, before, err, missions.ErrNotValidated)

	res = do(t, env, validate(t, env, id, governance.OutcomeEscalate))
	if got, want := res.Aggregate.State.Status, missions.StatusReady; got != want {
		t.Fatalf("after the escalate verdict: %s, want %s", got, want)
	}
	res = do(t, env, missions.Start{MissionID: id})
	if s := res.Aggregate.State; s.Status != missions.StatusRunning || s.ApprovalID != approval {
		t.Fatalf("after start: %s with approval %q", s.Status, s.ApprovalID)
	}

	// A rejected plan is not started by an approval granted before.
	bad, badIR := create(t, env, forbidden)
	a := uuid.NewString()
	tok, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: a, IRID: badIR, MissionID: bad}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: a, Token: tok, ConsumedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Missions.GrantApproval(ctx, dt.Meta(), missions.GrantApproval{MissionID: bad, ApprovalID: a}); err != nil {
		t.Fatal(err)
	}
	if res := do(t, env, validate(t, env, bad, governance.OutcomeReject)); res.Aggregate.State.Status != missions.StatusRejected {
		t.Fatalf("after the reject verdict: %s", res.Aggregate.State.Status)
	}
	before = dt.Head(t, env.Store)
	_, err = env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: bad})
	dt.Refused(t, env.Store, before, err, missions.ErrEnded)
}
