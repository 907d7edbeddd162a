package governance

import (
	"time"

	"github.com/brainhq/eventstream/aggregates"
)

// Event type names (the stored names).
const (
	TypeApprovalCreated   = "ir.approval_created"
	TypeApprovalConsumed  = "ir.approval_consumed"
	TypeApprovalExpired   = "ir.approval_expired"
	TypeApprovalInvalid   = "ir.approval_invalid"
	TypeValidatedPass     = "ir.validated_pass"
	TypeValidatedEscalate = "ir.validated_escalate"
	TypeValidatedReject   = "ir.validated_reject"
	TypeDAGDiffOK         = "ir.dag_diff_ok"
	TypeDAGDiffFailed     = "ir.dag_diff_failed"
)

// InvalidReason is why an attempt to use an approval was refused.
type InvalidReason string

// The reasons of ir.approval_invalid: v1 has the first four, v2 adds the
// four-eyes refusals (ErrSelfApproval, ErrApproverUnnamed) and an approval
// presented for another mission than its own (ErrApprovalMission).
const (
	ReasonUnknownApproval InvalidReason = "unknown_approval"
	ReasonTokenMismatch   InvalidReason = "token_mismatch"
	ReasonAlreadyConsumed InvalidReason = "already_consumed"
	ReasonTenantMismatch  InvalidReason = "tenant_mismatch"
	ReasonSelfApproval    InvalidReason = "self_approval"
	ReasonApproverUnnamed InvalidReason = "approver_unnamed"
	ReasonMissionMismatch InvalidReason = "mission_mismatch"
)

// SeverityCritical is the severity of DAG tampering.
const SeverityCritical = "critical"

// ApprovalCreated is ir.approval_created v1. Only the token's SHA-256 is
// stored.
type ApprovalCreated struct {
	ApprovalID  string    `json:"approval_id"`
	IRID        string    `json:"ir_id"`
	MissionID   string    `json:"mission_id,omitempty"`
	TokenSHA256 string    `json:"token_sha256"`
	ExpiresAt   time.Time `json:"expires_at"`
	RequestedBy string    `json:"requested_by,omitempty"`
}

// ApprovalConsumed is ir.approval_consumed v1.
type ApprovalConsumed struct {
	ApprovalID string `json:"approval_id"`
	IRID       string `json:"ir_id"`
	MissionID  string `json:"mission_id,omitempty"`
	ConsumedBy string `json:"consumed_by,omitempty"`
}

// ApprovalExpired is ir.approval_expired v1.
type ApprovalExpired struct {
	ApprovalID string    `json:"approval_id"`
	IRID       string    `json:"ir_id"`
	MissionID  string    `json:"mission_id,omitempty"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// ApprovalInvalid is ir.approval_invalid v2 (v1 lacks the reasons
// self_approval, approver_unnamed and mission_mismatch, and
// presented_mission_id; UpcastApprovalInvalidV1).
type ApprovalInvalid struct {
	ApprovalID         string        `json:"approval_id"`
	IRID               string        `json:"ir_id,omitempty"`
	Reason             InvalidReason `json:"reason"`
	PresentedTenantID  string        `json:"presented_tenant_id,omitempty"`
	PresentedMissionID string        `json:"presented_mission_id,omitempty"`
	AttemptedBy        string        `json:"attempted_by,omitempty"`
}

// ValidatedPass is ir.validated_pass v1.
type ValidatedPass struct {
	IRID      string `json:"ir_id"`
	IRSHA256  string `json:"ir_sha256"`
	MissionID string `json:"mission_id,omitempty"`
	Steps     []Step `json:"steps"`
	MaxTier   int    `json:"max_tier"`
}

// ValidatedEscalate is ir.validated_escalate v1.
type ValidatedEscalate struct {
	IRID           string   `json:"ir_id"`
	IRSHA256       string   `json:"ir_sha256"`
	MissionID      string   `json:"mission_id,omitempty"`
	Steps          []Step   `json:"steps"`
	MaxTier        int      `json:"max_tier"`
	EscalatedSteps []string `json:"escalated_steps"`
}

// ValidatedReject is ir.validated_reject v1.
type ValidatedReject struct {
	IRID      string `json:"ir_id"`
	IRSHA256  string `json:"ir_sha256"`
	MissionID string `json:"mission_id,omitempty"`
	StepID    string `json:"step_id"`
	Action    string `json:"action"`
	Rule      string `json:"rule"`
	Message   string `json:"message,omitempty"`
}

// DAGDiffOK is ir.dag_diff_ok v1.
type DAGDiffOK struct {
	IRID      string `json:"ir_id"`
	IRSHA256  string `json:"ir_sha256"`
	MissionID string `json:"mission_id,omitempty"`
	NodeCount int    `json:"node_count"`
}

// DAGDiffFailed is ir.dag_diff_failed v1.
type DAGDiffFailed struct {
	IRID            string   `json:"ir_id"`
	IRSHA256        string   `json:"ir_sha256"`
	MissionID       string   `json:"mission_id,omitempty"`
	Severity        string   `json:"severity"`
	MissingSteps    []string `json:"missing_steps"`
	UnexpectedNodes []string `json:"unexpected_nodes"`
	ChangedNodes    []string `json:"changed_nodes"`
}

// Register binds the module's event types to reg, with the upcaster of
// ir.approval_invalid v1→v2, and declares the "ir." types its own.
func Register(reg *aggregates.Registry) {
	aggregates.Register[ApprovalCreated](reg, TypeApprovalCreated, 1)
	aggregates.Register[ApprovalConsumed](reg, TypeApprovalConsumed, 1)
	aggregates.Register[ApprovalExpired](reg, TypeApprovalExpired, 1)
	aggregates.Register[ApprovalInvalid](reg, TypeApprovalInvalid, 2)
	aggregates.Register[ValidatedPass](reg, TypeValidatedPass, 1)
	aggregates.Register[ValidatedEscalate](reg, TypeValidatedEscalate, 1)
	aggregates.Register[ValidatedReject](reg, TypeValidatedReject, 1)
	aggregates.Register[DAGDiffOK](reg, TypeDAGDiffOK, 1)
	aggregates.Register[DAGDiffFailed](reg, TypeDAGDiffFailed, 1)
	reg.RegisterUpcaster(TypeApprovalInvalid, 1, UpcastApprovalInvalidV1)
	reg.Own("ir.")
}

// UpcastApprovalInvalidV1 brings ir.approval_invalid v1 to v2. v2 only
// widens the reason's enum and adds an optional field, so a v1 payload is
// a v2 payload as it is.
func UpcastApprovalInvalidV1(p map[string]any) (map[string]any, error) { return p, nil }
