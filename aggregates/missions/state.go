package missions

import (
	"fmt"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/governance"
)

// Status is where a mission is:
//
//	created ─validated pass──────────────────────▶ ready ─▶ running ─▶ completed | failed
//	        ─validated escalate▶ awaiting_approval ─approval granted─▲
//	        ─validated reject──▶ rejected
//
// and any state before the end may be cancelled. An approval may also be
// granted while the mission is created (consumed before governance's
// verdict reached it): the mission stays created, and an escalate verdict
// then makes it ready rather than awaiting an approval it already has.
type Status string

// Mission statuses.
const (
	StatusNone             Status = ""
	StatusCreated          Status = "created"
	StatusAwaitingApproval Status = "awaiting_approval"
	StatusReady            Status = "ready"
	StatusRejected         Status = "rejected"
	StatusRunning          Status = "running"
	StatusCompleted        Status = "completed"
	StatusFailed           Status = "failed"
	StatusCancelled        Status = "cancelled"
)

// Terminal reports whether nothing may follow s.
func (s Status) Terminal() bool {
	return s == StatusRejected || s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Task is one task of a mission.
type Task struct {
	TaskID    string `json:"task_id"`
	StepID    string `json:"step_id"`
	Completed bool   `json:"completed"`
}

// State is a mission rebuilt from its events.
type State struct {
	MissionID string `json:"mission_id"`
	// TenantID is the tenant that created the mission, the only one whose
	// commands it takes.
	TenantID   string            `json:"tenant_id"`
	IRID       string            `json:"ir_id"`
	Title      string            `json:"title"`
	Steps      []governance.Step `json:"steps"`
	Status     Status            `json:"status"`
	Outcome    string            `json:"outcome,omitempty"`
	MaxTier    int               `json:"max_tier"`
	ApprovalID string            `json:"approval_id,omitempty"`
	Tasks      map[string]*Task  `json:"tasks"`      // task id → task
	StepTasks  map[string]string `json:"step_tasks"` // step id → task id
	EndReason  string            `json:"end_reason,omitempty"`
}

// SnapshotSchemaVersion is the version of State's JSON encoding (2:
// TenantID, which a version 1 snapshot lacks).
const SnapshotSchemaVersion = 2

func newState(id string) State {
	return State{MissionID: id, Tasks: map[string]*Task{}, StepTasks: map[string]string{}}
}

func (s *State) step(id string) (governance.Step, bool) {
	for _, st := range s.Steps {
		if st.ID == id {
			return st, true
		}
	}
	return governance.Step{}, false
}

func apply(s *State, e aggregates.Event) error {
	switch d := e.Data.(type) {
	case Created:
		s.IRID, s.Title, s.Steps, s.Status = d.IRID, d.Title, d.Steps, StatusCreated
		s.TenantID = e.Meta.TenantID
	case Validated:
		s.Outcome, s.MaxTier = d.Outcome, d.MaxTier
		switch d.Outcome {
		case governance.OutcomePass:
			s.Status = StatusReady
		case governance.OutcomeEscalate:
			s.Status = StatusAwaitingApproval
			if s.ApprovalID != "" {
				s.Status = StatusReady // granted before the verdict
			}
		default:
			s.Status, s.EndReason = StatusRejected, d.Rule
		}
	case ApprovalGranted:
		s.ApprovalID = d.ApprovalID
		if s.Status == StatusAwaitingApproval {
			s.Status = StatusReady
		}
	case Started:
		s.Status = StatusRunning
	case TaskCreated:
		s.Tasks[d.TaskID] = &Task{TaskID: d.TaskID, StepID: d.StepID}
		s.StepTasks[d.StepID] = d.TaskID
	case TaskCompleted:
		if t := s.Tasks[d.TaskID]; t != nil {
			t.Completed = true
		}
	case Completed:
		s.Status = StatusCompleted
	case Failed:
		s.Status, s.EndReason = StatusFailed, d.Reason
	case Cancelled:
		s.Status, s.EndReason = StatusCancelled, d.Reason
	default:
		return fmt.Errorf("missions: unexpected event %T", e.Data)
	}
	return nil
}
