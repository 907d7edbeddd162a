package governance

import (
	"fmt"

	"github.com/brainhq/eventstream/aggregates"
)

// Rules of IR validation.
var (
	ErrMalformedIR    = aggregates.Rule("ir-well-formed", "an IR has steps with unique ids, actions and tiers 0..3")
	ErrIRChanged      = aggregates.Rule("ir-immutable", "an IR is validated once; a changed plan is a new IR")
	ErrDAGBeforeCheck = aggregates.Rule("dag-needs-validated-ir", "a DAG is checked against an IR that passed or escalated")
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
	Outcome   string `json:"outcome,omitempty"`
	Steps     []Step `json:"steps,omitempty"`
	MaxTier   int    `json:"max_tier"`
	Rule      string `json:"rule,omitempty"`
	// DAGChecks and DAGFailures count DAG comparisons and failed ones.
	DAGChecks   int `json:"dag_checks"`
	DAGFailures int `json:"dag_failures"`
}

func newIR(id string) IRState { return IRState{IRID: id} }

func applyIR(s *IRState, e aggregates.Event) error {
	switch d := e.Data.(type) {
	case ValidatedPass:
		s.SHA256, s.MissionID, s.Outcome, s.Steps, s.MaxTier = d.IRSHA256, d.MissionID, OutcomePass, d.Steps, d.MaxTier
	case ValidatedEscalate:
		s.SHA256, s.MissionID, s.Outcome, s.Steps, s.MaxTier = d.IRSHA256, d.MissionID, OutcomeEscalate, d.Steps, d.MaxTier
	case ValidatedReject:
		s.SHA256, s.MissionID, s.Outcome, s.Rule = d.IRSHA256, d.MissionID, OutcomeReject, d.Rule
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
// again changes nothing; validating a changed IR under the same id is
// refused.
type ValidateIR struct {
	IR        IR
	MissionID string

	policy Policy
}

func (c ValidateIR) AggregateID() string { return c.IR.ID }

func (c ValidateIR) Decide(a *irAgg) ([]any, error) {
	if err := c.IR.check(); err != nil {
		return nil, aggregates.Refuse(ErrMalformedIR, "%v", err)
	}
	sum := c.IR.SHA256()
	if a.State.Outcome != "" {
		if a.State.SHA256 == sum {
			return nil, nil
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

// CheckDAG compares the nodes of the execution DAG compiled from an IR
// with the IR's validated steps. A difference is tampering: it is recorded
// as ir.dag_diff_failed (severity critical), and the command succeeds,
// since recording it is the point; Result.Events says which was recorded.
type CheckDAG struct {
	IRID  string
	Nodes []Step
}

func (c CheckDAG) AggregateID() string { return c.IRID }

func (c CheckDAG) Decide(a *irAgg) ([]any, error) {
	s := a.State
	if !a.Exists() || s.Outcome == "" {
		return nil, a.NotFound()
	}
	if s.Outcome != OutcomePass && s.Outcome != OutcomeEscalate {
		return nil, aggregates.Refuse(ErrDAGBeforeCheck, "IR %s was rejected by rule %s", a.ID, s.Rule)
	}
	missing, unexpected, changed := Diff(s.Steps, c.Nodes)
	if len(missing)+len(unexpected)+len(changed) == 0 {
		return []any{DAGDiffOK{IRID: a.ID, IRSHA256: s.SHA256, MissionID: s.MissionID, NodeCount: len(c.Nodes)}}, nil
	}
	nz := func(x []string) []string {
		if x == nil {
			return []string{}
		}
		return x
	}
	return []any{DAGDiffFailed{IRID: a.ID, IRSHA256: s.SHA256, MissionID: s.MissionID, Severity: SeverityCritical,
		MissingSteps: nz(missing), UnexpectedNodes: nz(unexpected), ChangedNodes: nz(changed)}}, nil
}

var (
	_ aggregates.Command[IRState] = ValidateIR{}
	_ aggregates.Command[IRState] = CheckDAG{}
)
