package missions

import (
	"slices"
	"sort"
	"unicode/utf8"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/governance"
)

// Rules a mission command can break.
var (
	ErrMissionExists       = aggregates.Rule("mission-once", "the mission already exists")
	ErrStepsUnique         = aggregates.Rule("mission-steps-unique", "a mission's IR names each step once")
	ErrState               = aggregates.Rule("mission-state", "the command is not allowed in the mission's state")
	ErrEnded               = aggregates.Rule("nothing-after-end", "a mission that ended accepts no command")
	ErrIRMismatch          = aggregates.Rule("mission-ir-match", "the verdict or approval is for another IR")
	ErrNotValidated        = aggregates.Rule("mission-validated", "a mission starts only after governance validated its IR")
	ErrApprovalRequired    = aggregates.Rule("tier2-needs-approval", "a mission with a step of tier 2 or more starts only with a consumed approval for its IR")
	ErrApprovalNotConsumed = aggregates.Rule("approval-consumed", "only a consumed approval can be granted to a mission")
	// ErrApprovalOtherTenant is no longer returned: another tenant's
	// approval is answered as one governance never created (not found
	// for GrantApproval, ErrApprovalNotConsumed for Start), so that a
	// tenant naming it does not learn that it exists.
	//
	// Deprecated: test for aggregates.ErrNotFound or ErrApprovalNotConsumed.
	ErrApprovalOtherTenant  = aggregates.Rule("approval-same-tenant", "the approval belongs to another tenant")
	ErrApprovalOtherMission = aggregates.Rule("approval-same-mission", "the approval was given for another mission, or for none")
	ErrStepNotDeclared      = aggregates.Rule("task-step-declared", "a task runs a step of the mission's IR")
	ErrTaskTwice            = aggregates.Rule("task-once", "each IR step gets one task, completed once")
	ErrUnknownTask          = aggregates.Rule("task-known", "no such task in the mission")
	ErrTasksIncomplete      = aggregates.Rule("mission-tasks-complete", "a mission completes when every step's task completed")
	ErrVerdictChanged       = aggregates.Rule("mission-verdict-once", "a mission is validated once")
	ErrUnknownOutcome       = aggregates.Rule("mission-outcome", "outcome is pass, escalate or reject")
	ErrMissionTenant        = aggregates.Rule("mission-tenant", "a mission belongs to the tenant that created it")
	ErrVerdictNotRecorded   = aggregates.Rule("verdict-recorded", "a mission records a verdict only once governance recorded it for the mission's IR, tenant and mission")
	ErrVerdictDisagrees     = aggregates.Rule("verdict-as-recorded", "a mission's verdict is the one governance recorded for its IR")
	ErrTextEncoding         = aggregates.Rule("text-utf8", "a mission's text is valid UTF-8")
	ErrTaskCompleted        = aggregates.Rule("task-failed-open", "the task a mission failed by has not completed")
	ErrBlank                = aggregates.Rule("text-not-blank", "a mission's title, or the reason it ended, has a visible character")
)

type agg = aggregates.Aggregate[State]

// refuseInvalidText refuses the first of fields (name, value pairs) that
// is not valid UTF-8. JSON cannot hold such text: the stored payload
// would have U+FFFD for its bad bytes, so the mission read back would
// differ from the one decided (two step ids differing only there would
// be one).
func refuseInvalidText(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if !utf8.ValidString(fields[i+1]) {
			return aggregates.Refuse(ErrTextEncoding, "%s %q is not valid UTF-8", fields[i], fields[i+1])
		}
	}
	return nil
}

// open refuses a command on a missing or ended mission.
func open(a *agg) error {
	if !a.Exists() {
		return a.NotFound()
	}
	if a.State.Status.Terminal() {
		return aggregates.Refuse(ErrEnded, "the mission is %s", a.State.Status)
	}
	return nil
}

// sameTenant refuses a caller of another tenant than an existing
// mission's, saying nothing of the mission.
func sameTenant(a *agg, tenantID string) error {
	if a.Exists() && a.State.TenantID != tenantID {
		return otherTenant()
	}
	return nil
}

func otherTenant() *aggregates.RuleError {
	return aggregates.Refuse(ErrMissionTenant, "the mission belongs to another tenant")
}

func owner(s State) string { return s.TenantID }

func in(a *agg, command string, want ...Status) error {
	if err := open(a); err != nil {
		return err
	}
	for _, w := range want {
		if a.State.Status == w {
			return nil
		}
	}
	return aggregates.Refuse(ErrState, "%s needs the mission %v, it is %s", command, want, a.State.Status)
}

// Create creates a mission with its IR.
type Create struct {
	MissionID string
	IRID      string
	Title     string
	Steps     []governance.Step
	CreatedBy string
}

func (c Create) AggregateID() string { return c.MissionID }

func (c Create) Decide(a *agg) ([]any, error) {
	if a.Exists() {
		return nil, aggregates.Refuse(ErrMissionExists, "mission for IR %s", a.State.IRID)
	}
	if err := refuseInvalidText("title", c.Title, "created_by", c.CreatedBy); err != nil {
		return nil, err
	}
	if aggregates.Blank(c.Title) {
		return nil, aggregates.Refuse(ErrBlank, "title %q shows nothing", c.Title)
	}
	seen := map[string]bool{}
	for _, s := range c.Steps {
		if err := refuseInvalidText("step id", s.ID, "action", s.Action); err != nil {
			return nil, err
		}
		if seen[s.ID] {
			return nil, aggregates.Refuse(ErrStepsUnique, "step %q appears twice", s.ID)
		}
		seen[s.ID] = true
	}
	return []any{Created{MissionID: c.MissionID, IRID: c.IRID, Title: c.Title, Steps: c.Steps, CreatedBy: c.CreatedBy}}, nil
}

// RecordValidation records governance's verdict on the mission's IR. The
// verdict is governance's, never the caller's: Service.Handle fills in
// governance's record of the IR (Governance.IRStatus), and the command is
// refused unless governance recorded a verdict on the IR for the
// mission's tenant and for this mission (ErrVerdictNotRecorded), for the
// plan the mission runs (the IR's SHA-256 over the mission's IR id and
// steps; ErrIRMismatch), and that verdict is the command's (outcome, max
// tier and rule; ErrVerdictDisagrees). The same verdict again changes
// nothing (a redelivered governance event).
type RecordValidation struct {
	MissionID string
	IRID      string
	Outcome   string
	MaxTier   int
	Rule      string

	// governed is governance's record of IRID (nil: none), set by the
	// service; a command decided without it records nothing.
	governed *governance.IRState
}

func (c RecordValidation) AggregateID() string { return c.MissionID }

func (c RecordValidation) Decide(a *agg) ([]any, error) {
	if a.Exists() && a.State.Outcome != "" {
		if a.State.Outcome == c.Outcome && a.State.IRID == c.IRID {
			return nil, nil
		}
		return nil, aggregates.Refuse(ErrVerdictChanged, "already validated as %s", a.State.Outcome)
	}
	if err := in(a, "record validation", StatusCreated); err != nil {
		return nil, err
	}
	if c.IRID != a.State.IRID {
		return nil, aggregates.Refuse(ErrIRMismatch, "verdict for IR %s, mission runs IR %s", c.IRID, a.State.IRID)
	}
	switch c.Outcome {
	case governance.OutcomePass, governance.OutcomeEscalate, governance.OutcomeReject:
	default:
		return nil, aggregates.Refuse(ErrUnknownOutcome, "outcome %q", c.Outcome)
	}
	g := c.governed
	if err := governed(a, g); err != nil {
		return nil, err
	}
	if c.Outcome != g.Outcome || c.MaxTier != g.MaxTier || c.Rule != g.Rule {
		return nil, aggregates.Refuse(ErrVerdictDisagrees, "governance recorded %s (max tier %d, rule %q) for IR %s, not %s (max tier %d, rule %q)",
			g.Outcome, g.MaxTier, g.Rule, a.State.IRID, c.Outcome, c.MaxTier, c.Rule)
	}
	return []any{Validated{MissionID: a.ID, IRID: a.State.IRID, Outcome: g.Outcome, MaxTier: g.MaxTier, Rule: g.Rule}}, nil
}

// governed refuses unless g, governance's record of the mission's IR (nil:
// none), holds a verdict on that IR for the mission's tenant and for this
// mission (ErrVerdictNotRecorded), given for the plan the mission runs: the
// IR's SHA-256 over the mission's IR id and steps (ErrIRMismatch). Both
// RecordValidation and Start check a verdict with it.
func governed(a *agg, g *governance.IRState) error {
	switch {
	case g == nil || g.Outcome == "" || g.IRID != a.State.IRID || g.TenantID != a.State.TenantID:
		// An IR id validated for another tenant is, for this one, an IR
		// governance never validated: nothing of it is said.
		return aggregates.Refuse(ErrVerdictNotRecorded, "governance has recorded no verdict on IR %s for the mission's tenant", a.State.IRID)
	case !slices.Contains(g.Missions, a.ID):
		return aggregates.Refuse(ErrVerdictNotRecorded, "governance has not recorded IR %s's verdict for this mission (ValidateIR with its mission id)", a.State.IRID)
	}
	if sum := (governance.IR{ID: a.State.IRID, Steps: a.State.Steps}).SHA256(); sum != g.SHA256 {
		return aggregates.Refuse(ErrIRMismatch, "governance validated IR %s with hash %s; the mission's plan hashes to %s", a.State.IRID, short(g.SHA256), short(sum))
	}
	return nil
}

// short is the start of a hash, for messages.
func short(sum string) string { return sum[:min(len(sum), 12)] }

// GrantApproval records a consumed approval for the mission's IR, letting
// an escalated mission start. The approval must name the mission (created
// for it, or consumed for it: governance.ConsumeApproval.MissionID), so
// one approval authorises one mission. It is granted to a mission awaiting
// an approval, or to one still waiting for its verdict (created), which an
// escalate verdict then makes ready; a mission takes one approval. Service.GrantApproval fills in what the
// approval's own record says; granting the same approval again changes
// nothing.
type GrantApproval struct {
	MissionID  string
	ApprovalID string

	approval governance.ApprovalState
	tenantID string
}

func (c GrantApproval) AggregateID() string { return c.MissionID }

func (c GrantApproval) Decide(a *agg) ([]any, error) {
	// Tenants first, and saying nothing of the approval or the mission:
	// the approval must be the caller's tenant's (another tenant's is one
	// governance never created), and so must the mission.
	if c.approval.TenantID != c.tenantID {
		return nil, approvalNotFound(c.ApprovalID)
	}
	if err := sameTenant(a, c.tenantID); err != nil {
		return nil, err
	}
	if a.Exists() && a.State.ApprovalID == c.ApprovalID && c.ApprovalID != "" {
		return nil, nil
	}
	// Created too: an approval consumed before governance's verdict
	// reached the mission (the reactions lag behind the approver) is
	// granted now, and the escalate verdict then makes the mission
	// ready. Refused, its event would be parked for good and the
	// mission would wait forever for an approval that was single-use.
	if err := in(a, "grant approval", StatusCreated, StatusAwaitingApproval); err != nil {
		return nil, err
	}
	if a.State.ApprovalID != "" {
		return nil, aggregates.Refuse(ErrState, "approval %s was granted to the mission already", a.State.ApprovalID)
	}
	if err := approved(a, c.ApprovalID, &c.approval); err != nil {
		return nil, err
	}
	return []any{ApprovalGranted{MissionID: a.ID, IRID: a.State.IRID, ApprovalID: c.ApprovalID}}, nil
}

// approved refuses unless ap, governance's record of the approval id (nil:
// none), is that approval, the mission's tenant's (another tenant's is, to
// this one, an approval governance never created), consumed
// (ErrApprovalNotConsumed), for the mission's IR (ErrIRMismatch) and for
// this mission (ErrApprovalOtherMission). Both GrantApproval and Start
// check an approval with it.
func approved(a *agg, id string, ap *governance.ApprovalState) error {
	switch {
	case ap == nil || id == "" || ap.ApprovalID != id || ap.TenantID != a.State.TenantID:
		// Governance has no such approval for the mission's tenant (or
		// none was read for it).
		return aggregates.Refuse(ErrApprovalNotConsumed, "governance has recorded no consumed approval %s", id)
	case !ap.Consumed:
		return aggregates.Refuse(ErrApprovalNotConsumed, "approval %s is not consumed", id)
	case ap.IRID != a.State.IRID:
		return aggregates.Refuse(ErrIRMismatch, "approval %s is for IR %s, mission runs IR %s", id, ap.IRID, a.State.IRID)
	case ap.MissionID == "":
		// Consumed once, it authorises one mission: the one it was created
		// or consumed for. Granting one that names none to any mission
		// that asks would let its single use start them all.
		return aggregates.Refuse(ErrApprovalOtherMission, "approval %s was consumed for no mission", id)
	case ap.MissionID != a.ID:
		// Another mission may run the same IR; the approval was consumed
		// once, for the mission it names.
		return aggregates.Refuse(ErrApprovalOtherMission, "approval %s was given for mission %s", id, ap.MissionID)
	}
	return nil
}

// Start starts a validated mission. A mission with a step of tier 2 or
// more needs a granted (consumed) approval for its IR. The verdict in the
// mission's stream is not enough: it may predate the checks of
// RecordValidation, or have been appended raw. Service.Handle fills in
// governance's record of the mission's IR (Governance.IRStatus), and a
// ready mission starts only if governance recorded a verdict on the IR for
// the mission's tenant and for this mission, for the plan it runs (as
// RecordValidation checks: ErrVerdictNotRecorded, ErrIRMismatch), that
// verdict is the stream's (ErrVerdictDisagrees), and it allows starting:
// pass, or escalate with a granted approval (ErrApprovalRequired). Nor is
// the approval the stream names enough: a mission.approval_granted may
// have been appended raw too. Service.Handle also fills in governance's
// record of that approval (Governance.ApprovalStatus), and a mission that
// needs an approval starts only with one GrantApproval would grant it
// (the same checks: consumed, by the mission's tenant, for its IR and for
// this mission).
type Start struct {
	MissionID string

	// governed is governance's record of the mission's IR (nil: none),
	// set by the service; a Start decided without it starts nothing.
	governed *governance.IRState
	// approval is governance's record of the approval the mission's
	// stream names (nil: none, or the stream named none), set by the
	// service; a mission that needs an approval does not start without it.
	approval *governance.ApprovalState
}

func (c Start) AggregateID() string { return c.MissionID }

func (c Start) Decide(a *agg) ([]any, error) {
	if err := open(a); err != nil {
		return nil, err
	}
	s := a.State
	switch s.Status {
	case StatusCreated:
		return nil, aggregates.Refuse(ErrNotValidated, "IR %s has no verdict yet", s.IRID)
	case StatusAwaitingApproval:
		return nil, aggregates.Refuse(ErrApprovalRequired, "IR %s has tier %d steps and no consumed approval", s.IRID, s.MaxTier)
	case StatusReady:
	default:
		return nil, aggregates.Refuse(ErrState, "start needs the mission ready, it is %s", s.Status)
	}
	// The steps the mission runs decide, not only the verdict's max tier:
	// a verdict recorded by a caller may understate it.
	tier := s.MaxTier
	for _, st := range s.Steps {
		tier = max(tier, st.Tier)
	}
	if tier >= governance.EscalationTier && s.ApprovalID == "" {
		return nil, aggregates.Refuse(ErrApprovalRequired, "IR %s has tier %d steps and no consumed approval", s.IRID, tier)
	}
	// Nor the verdict the stream holds: governance's decides.
	g := c.governed
	if err := governed(a, g); err != nil {
		return nil, err
	}
	if g.Outcome != s.Outcome {
		return nil, aggregates.Refuse(ErrVerdictDisagrees, "governance recorded %s for IR %s, the mission's stream says %s", g.Outcome, s.IRID, s.Outcome)
	}
	switch g.Outcome {
	case governance.OutcomePass, governance.OutcomeEscalate:
	default:
		return nil, aggregates.Refuse(ErrVerdictDisagrees, "governance recorded %s for IR %s: the mission does not start", g.Outcome, s.IRID)
	}
	if g.Outcome == governance.OutcomeEscalate || tier >= governance.EscalationTier {
		if s.ApprovalID == "" {
			return nil, aggregates.Refuse(ErrApprovalRequired, "governance escalated IR %s and the mission has no consumed approval", s.IRID)
		}
		// Nor the approval the stream names: governance's record of it
		// must be one GrantApproval grants.
		if err := approved(a, s.ApprovalID, c.approval); err != nil {
			return nil, err
		}
	}
	return []any{Started{MissionID: a.ID, IRID: s.IRID, ApprovalID: s.ApprovalID}}, nil
}

// CreateTask creates the task of one IR step of a running mission.
type CreateTask struct {
	MissionID string
	TaskID    string
	StepID    string
}

func (c CreateTask) AggregateID() string { return c.MissionID }

func (c CreateTask) Decide(a *agg) ([]any, error) {
	if err := in(a, "create task", StatusRunning); err != nil {
		return nil, err
	}
	st, ok := a.State.step(c.StepID)
	if !ok {
		return nil, aggregates.Refuse(ErrStepNotDeclared, "step %q is not in IR %s", c.StepID, a.State.IRID)
	}
	if t, dup := a.State.StepTasks[c.StepID]; dup {
		return nil, aggregates.Refuse(ErrTaskTwice, "step %q already has task %s", c.StepID, t)
	}
	if _, dup := a.State.Tasks[c.TaskID]; dup {
		return nil, aggregates.Refuse(ErrTaskTwice, "task %s exists", c.TaskID)
	}
	return []any{TaskCreated{MissionID: a.ID, TaskID: c.TaskID, StepID: c.StepID, Action: st.Action}}, nil
}

// CompleteTask records a task's success.
type CompleteTask struct {
	MissionID string
	TaskID    string
}

func (c CompleteTask) AggregateID() string { return c.MissionID }

func (c CompleteTask) Decide(a *agg) ([]any, error) {
	if err := in(a, "complete task", StatusRunning); err != nil {
		return nil, err
	}
	t, ok := a.State.Tasks[c.TaskID]
	if !ok {
		return nil, aggregates.Refuse(ErrUnknownTask, "task %s", c.TaskID)
	}
	if t.Completed {
		return nil, aggregates.Refuse(ErrTaskTwice, "task %s is already completed", c.TaskID)
	}
	return []any{TaskCompleted{MissionID: a.ID, TaskID: c.TaskID, StepID: t.StepID}}, nil
}

// Complete ends a running mission whose every step has a completed task.
type Complete struct{ MissionID string }

func (c Complete) AggregateID() string { return c.MissionID }

func (c Complete) Decide(a *agg) ([]any, error) {
	if err := in(a, "complete", StatusRunning); err != nil {
		return nil, err
	}
	var pending []string
	for _, st := range a.State.Steps {
		id, ok := a.State.StepTasks[st.ID]
		if !ok || !a.State.Tasks[id].Completed {
			pending = append(pending, st.ID)
		}
	}
	if len(pending) > 0 {
		sort.Strings(pending)
		return nil, aggregates.Refuse(ErrTasksIncomplete, "steps %v have no completed task", pending)
	}
	return []any{Completed{MissionID: a.ID, TaskCount: len(a.State.Tasks)}}, nil
}

// Fail ends a running mission in failure, naming the task that failed, if
// one did: a task of the mission that has not completed.
type Fail struct {
	MissionID string
	Reason    string
	TaskID    string
}

func (c Fail) AggregateID() string { return c.MissionID }

func (c Fail) Decide(a *agg) ([]any, error) {
	if err := in(a, "fail", StatusRunning); err != nil {
		return nil, err
	}
	if err := refuseInvalidText("reason", c.Reason); err != nil {
		return nil, err
	}
	if aggregates.Blank(c.Reason) {
		return nil, aggregates.Refuse(ErrBlank, "reason %q shows nothing: a failure says why", c.Reason)
	}
	if c.TaskID != "" {
		t, ok := a.State.Tasks[c.TaskID]
		if !ok {
			return nil, aggregates.Refuse(ErrUnknownTask, "task %s", c.TaskID)
		}
		if t.Completed {
			return nil, aggregates.Refuse(ErrTaskCompleted, "task %s (step %q) completed", c.TaskID, t.StepID)
		}
	}
	return []any{Failed{MissionID: a.ID, Reason: c.Reason, TaskID: c.TaskID}}, nil
}

// Cancel ends a mission that has not ended.
type Cancel struct {
	MissionID   string
	Reason      string
	CancelledBy string
}

func (c Cancel) AggregateID() string { return c.MissionID }

func (c Cancel) Decide(a *agg) ([]any, error) {
	if err := open(a); err != nil {
		return nil, err
	}
	if err := refuseInvalidText("reason", c.Reason, "cancelled_by", c.CancelledBy); err != nil {
		return nil, err
	}
	if c.Reason != "" && aggregates.Blank(c.Reason) {
		// No reason is omitted; one that shows nothing is refused.
		return nil, aggregates.Refuse(ErrBlank, "reason %q shows nothing", c.Reason)
	}
	return []any{Cancelled{MissionID: a.ID, Reason: c.Reason, CancelledBy: c.CancelledBy}}, nil
}

var (
	_ aggregates.Command[State] = Create{}
	_ aggregates.Command[State] = RecordValidation{}
	_ aggregates.Command[State] = GrantApproval{}
	_ aggregates.Command[State] = Start{}
	_ aggregates.Command[State] = CreateTask{}
	_ aggregates.Command[State] = CompleteTask{}
	_ aggregates.Command[State] = Complete{}
	_ aggregates.Command[State] = Fail{}
	_ aggregates.Command[State] = Cancel{}
)
