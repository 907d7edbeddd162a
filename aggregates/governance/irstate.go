package governance

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/eventstore"
)

// Rules of IR validation.
var (
	ErrMalformedIR    = aggregates.Rule("ir-well-formed", "an IR has steps with unique ids, actions and tiers 0..3")
	ErrIRChanged      = aggregates.Rule("ir-immutable", "an IR is validated once; a changed plan is a new IR")
	ErrDAGBeforeCheck = aggregates.Rule("dag-needs-validated-ir", "a DAG is checked against an IR that passed or escalated")
	ErrIRTenant       = aggregates.Rule("ir-tenant", "an IR id belongs to the tenant that validated it")
)

// Outcomes of validation.
const (
	OutcomePass     = "pass"
	OutcomeEscalate = "escalate"
	OutcomeReject   = "reject"
)

// IRState is an IR's governance record rebuilt from its events.
type IRState struct {
	IRID      string `json:"ir_id"`
	SHA256    string `json:"sha256,omitempty"`
	MissionID string `json:"mission_id,omitempty"`
	// TenantID is the tenant the IR was validated for.
	TenantID string `json:"tenant_id,omitempty"`
	Outcome  string `json:"outcome,omitempty"`
	Steps    []Step `json:"steps,omitempty"`
	MaxTier  int    `json:"max_tier"`
	Rule     string `json:"rule,omitempty"`
	// RejectedStep is the step that broke Rule (reject), with its action
	// and the rule's message.
	RejectedStep   string `json:"rejected_step,omitempty"`
	RejectedAction string `json:"rejected_action,omitempty"`
	RuleMessage    string `json:"rule_message,omitempty"`
	// Missions are the missions the verdict was recorded for.
	Missions []string `json:"missions,omitempty"`
	// DAGChecks and DAGFailures count DAG comparisons and failed ones.
	DAGChecks   int `json:"dag_checks"`
	DAGFailures int `json:"dag_failures"`
}

func newIR(id string) IRState { return IRState{IRID: id} }

func applyIR(s *IRState, e aggregates.Event) error {
	var mission string
	switch d := e.Data.(type) {
	case ValidatedPass:
		mission = d.MissionID
	case ValidatedEscalate:
		mission = d.MissionID
	case ValidatedReject:
		mission = d.MissionID
	}
	switch e.Data.(type) {
	case ValidatedPass, ValidatedEscalate, ValidatedReject:
		if mission != "" && !slices.Contains(s.Missions, mission) {
			s.Missions = append(s.Missions, mission)
		}
		if s.MissionID == "" {
			s.MissionID = mission // the first mission the IR was validated for
		}
		if s.Outcome != "" {
			// The verdict again, for another mission (the same tenant,
			// hash and outcome).
			return nil
		}
		s.TenantID = e.Meta.TenantID
	}
	switch d := e.Data.(type) {
	case ValidatedPass:
		s.SHA256, s.Outcome, s.Steps, s.MaxTier = d.IRSHA256, OutcomePass, d.Steps, d.MaxTier
	case ValidatedEscalate:
		s.SHA256, s.Outcome, s.Steps, s.MaxTier = d.IRSHA256, OutcomeEscalate, d.Steps, d.MaxTier
	case ValidatedReject:
		s.SHA256, s.Outcome, s.Rule = d.IRSHA256, OutcomeReject, d.Rule
		s.RejectedStep, s.RejectedAction, s.RuleMessage = d.StepID, d.Action, d.Message
	case DAGDiffOK:
		s.DAGChecks++
	case DAGDiffFailed:
		s.DAGChecks++
		s.DAGFailures++
	default:
		return fmt.Errorf("governance: unexpected IR event %T", e.Data)
	}
	return nil
}

type irAgg = aggregates.Aggregate[IRState]

// ValidateIR validates an IR against the policy. Validating the same IR
// again changes nothing, except for a mission the verdict was not yet
// recorded for: the stored verdict (not the policy's answer now) is
// recorded again naming that mission, so every mission that runs the IR
// gets it. Validating a changed IR under the same id is refused.
type ValidateIR struct {
	IR        IR
	MissionID string

	policy   Policy
	tenantID string // the caller's (CommandMeta.TenantID), set by the service
}

func (c ValidateIR) AggregateID() string { return c.IR.ID }

func (c ValidateIR) Decide(a *irAgg) ([]any, error) {
	if err := c.IR.check(); err != nil {
		return nil, aggregates.Refuse(ErrMalformedIR, "%v", err)
	}
	sum := c.IR.SHA256()
	if a.State.Outcome != "" {
		if a.State.TenantID != c.tenantID {
			// Nothing of the other tenant's IR (its verdict, its hash, its
			// state in the result) reaches the caller.
			return nil, otherIRTenant(a.ID)
		}
		if a.State.SHA256 == sum {
			if c.MissionID == "" || slices.Contains(a.State.Missions, c.MissionID) {
				return nil, nil
			}
			return []any{a.State.verdictFor(c.MissionID)}, nil
		}
		return nil, aggregates.Refuse(ErrIRChanged, "IR %s was validated as %s with hash %s; this plan hashes to %s", a.ID, a.State.Outcome, a.State.SHA256[:12], sum[:12])
	}
	v := c.policy.Judge(c.IR)
	switch v.Outcome {
	case OutcomeReject:
		return []any{ValidatedReject{IRID: c.IR.ID, IRSHA256: sum, MissionID: c.MissionID, StepID: v.Step.ID, Action: v.Step.Action, Rule: v.Rule.Rule, Message: v.Rule.Message}}, nil
	case OutcomeEscalate:
		return []any{ValidatedEscalate{IRID: c.IR.ID, IRSHA256: sum, MissionID: c.MissionID, Steps: c.IR.Steps, MaxTier: v.MaxTier, EscalatedSteps: v.Escalated}}, nil
	}
	return []any{ValidatedPass{IRID: c.IR.ID, IRSHA256: sum, MissionID: c.MissionID, Steps: c.IR.Steps, MaxTier: v.MaxTier}}, nil
}

// verdictFor is the IR's stored verdict, recorded for mission.
func (s IRState) verdictFor(mission string) any {
	switch s.Outcome {
	case OutcomeReject:
		return ValidatedReject{IRID: s.IRID, IRSHA256: s.SHA256, MissionID: mission, StepID: s.RejectedStep, Action: s.RejectedAction, Rule: s.Rule, Message: s.RuleMessage}
	case OutcomeEscalate:
		var escalated []string
		for _, st := range s.Steps {
			if st.Tier >= EscalationTier {
				escalated = append(escalated, st.ID)
			}
		}
		return ValidatedEscalate{IRID: s.IRID, IRSHA256: s.SHA256, MissionID: mission, Steps: s.Steps, MaxTier: s.MaxTier, EscalatedSteps: escalated}
	}
	return ValidatedPass{IRID: s.IRID, IRSHA256: s.SHA256, MissionID: mission, Steps: s.Steps, MaxTier: s.MaxTier}
}

// CheckDAG compares the nodes of the execution DAG compiled from an IR
// with the IR's validated steps. A difference is tampering: it is recorded
// as ir.dag_diff_failed (severity critical), and the command succeeds,
// since recording it is the point; Result.Events says which was recorded.
//
// The IR's tenant checks it: another tenant's check is refused with
// ErrIRTenant and learns nothing of the IR, as for ValidateIR.
type CheckDAG struct {
	IRID  string
	Nodes []Step

	tenantID string // the caller's (CommandMeta.TenantID), set by the service
}

func (c CheckDAG) AggregateID() string { return c.IRID }

func (c CheckDAG) Decide(a *irAgg) ([]any, error) {
	s := a.State
	if !a.Exists() || s.Outcome == "" {
		return nil, a.NotFound()
	}
	if s.TenantID != c.tenantID {
		// Nothing of the other tenant's IR (its verdict, its rule, its
		// steps through a diff) reaches the caller, and nothing is
		// recorded in its name.
		return nil, otherIRTenant(a.ID)
	}
	if s.Outcome != OutcomePass && s.Outcome != OutcomeEscalate {
		return nil, aggregates.Refuse(ErrDAGBeforeCheck, "IR %s was rejected by rule %s", a.ID, s.Rule)
	}
	// The result is the IR's tenant's (the caller's, checked above):
	// tampering alerts reach the tenant whose plan it is.
	missing, unexpected, changed := Diff(s.Steps, c.Nodes)
	if len(missing)+len(unexpected)+len(changed) == 0 {
		return []any{aggregates.Emit{Data: DAGDiffOK{IRID: a.ID, IRSHA256: s.SHA256, MissionID: s.MissionID, NodeCount: len(c.Nodes)}, TenantID: s.TenantID}}, nil
	}
	return []any{aggregates.Emit{Data: failedRecord(DAGDiffFailed{IRID: a.ID, IRSHA256: s.SHA256, MissionID: s.MissionID, Severity: SeverityCritical,
		MissingSteps: missing, UnexpectedNodes: unexpected, ChangedNodes: changed}), TenantID: s.TenantID}}, nil
}

// Bounds of the lists of an ir.dag_diff_failed.
const (
	maxDiffIDs   = 1000 // ids per list
	maxDiffIDLen = 128  // characters per id
	// maxDiffBytes leaves room for the envelope's meta in an event.
	maxDiffBytes = eventstore.MaxEventBytes - 16<<10
)

// failedRecord returns f with lists the ir.dag_diff_failed schema takes,
// whatever the DAG's node ids are: the record of tampering must never be
// refused. An id is bounded by boundText (an empty one is recorded as
// `""`), a list keeps its first maxDiffIDs ids, and while the payload is
// too large for an event, lists are halved (unexpected nodes first, the
// only ones not taken from the validated IR).
func failedRecord(f DAGDiffFailed) DAGDiffFailed {
	bound := func(ids []string) []string {
		out := make([]string, 0, min(len(ids), maxDiffIDs))
		for _, id := range ids {
			if id == "" {
				id = `""`
			}
			out = append(out, boundText(id, maxDiffIDLen))
		}
		sort.Strings(out)
		return out[:min(len(out), maxDiffIDs)]
	}
	f.MissingSteps, f.UnexpectedNodes, f.ChangedNodes = bound(f.MissingSteps), bound(f.UnexpectedNodes), bound(f.ChangedNodes)
	for _, l := range []*[]string{&f.UnexpectedNodes, &f.ChangedNodes, &f.MissingSteps} {
		for len(*l) > 1 {
			if b, err := json.Marshal(f); err == nil && len(b) <= maxDiffBytes {
				break
			}
			*l = (*l)[:len(*l)/2]
		}
	}
	return f
}

var (
	_ aggregates.Command[IRState] = ValidateIR{}
	_ aggregates.Command[IRState] = CheckDAG{}
)
