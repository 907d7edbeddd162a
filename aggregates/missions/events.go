package missions

import (
	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/governance"
)

// Event type names (the stored names).
const (
	TypeCreated         = "mission.created"
	TypeValidated       = "mission.validated"
	TypeApprovalGranted = "mission.approval_granted"
	TypeStarted         = "mission.started"
	TypeTaskCreated     = "mission.task.created"
	TypeTaskCompleted   = "mission.task.completed"
	TypeCompleted       = "mission.completed"
	TypeFailed          = "mission.failed"
	TypeCancelled       = "mission.cancelled"
)

// Created is mission.created v1.
type Created struct {
	MissionID string            `json:"mission_id"`
	IRID      string            `json:"ir_id"`
	Title     string            `json:"title"`
	Steps     []governance.Step `json:"steps"`
	CreatedBy string            `json:"created_by,omitempty"`
}

// Validated is mission.validated v1.
type Validated struct {
	MissionID string `json:"mission_id"`
	IRID      string `json:"ir_id"`
	Outcome   string `json:"outcome"`
	MaxTier   int    `json:"max_tier"`
	Rule      string `json:"rule,omitempty"`
}

// ApprovalGranted is mission.approval_granted v1.
type ApprovalGranted struct {
	MissionID  string `json:"mission_id"`
	IRID       string `json:"ir_id"`
	ApprovalID string `json:"approval_id"`
}

// Started is mission.started v1.
type Started struct {
	MissionID  string `json:"mission_id"`
	IRID       string `json:"ir_id"`
	ApprovalID string `json:"approval_id,omitempty"`
}

// TaskCreated is mission.task.created v1.
type TaskCreated struct {
	MissionID string `json:"mission_id"`
	TaskID    string `json:"task_id"`
	StepID    string `json:"step_id"`
	Action    string `json:"action"`
}

// TaskCompleted is mission.task.completed v1.
type TaskCompleted struct {
	MissionID string `json:"mission_id"`
	TaskID    string `json:"task_id"`
	StepID    string `json:"step_id"`
}

// Completed is mission.completed v1.
type Completed struct {
	MissionID string `json:"mission_id"`
	TaskCount int    `json:"task_count"`
}

// Failed is mission.failed v1.
type Failed struct {
	MissionID string `json:"mission_id"`
	Reason    string `json:"reason"`
	TaskID    string `json:"task_id,omitempty"`
}

// Cancelled is mission.cancelled v1.
type Cancelled struct {
	MissionID   string `json:"mission_id"`
	Reason      string `json:"reason,omitempty"`
	CancelledBy string `json:"cancelled_by,omitempty"`
}

// Register binds the module's event types to reg and declares the
// "mission." types its own.
func Register(reg *aggregates.Registry) {
	aggregates.Register[Created](reg, TypeCreated, 1)
	aggregates.Register[Validated](reg, TypeValidated, 1)
	aggregates.Register[ApprovalGranted](reg, TypeApprovalGranted, 1)
	aggregates.Register[Started](reg, TypeStarted, 1)
	aggregates.Register[TaskCreated](reg, TypeTaskCreated, 1)
	aggregates.Register[TaskCompleted](reg, TypeTaskCompleted, 1)
	aggregates.Register[Completed](reg, TypeCompleted, 1)
	aggregates.Register[Failed](reg, TypeFailed, 1)
	aggregates.Register[Cancelled](reg, TypeCancelled, 1)
	reg.Own("mission.")
}
