// Package missions is the one canonical mission aggregate (the earlier
// system had two competing ones). A mission is created with an IR, gets
// governance's verdict on it (mission.validated), waits for a consumed
// approval when the verdict is escalate (mission.approval_granted), then
// starts, runs one task per IR step, and ends completed, failed or
// cancelled; a rejected IR ends it at once. A mission with a step of tier 2
// or more never starts without a consumed approval for its own IR.
package missions

import (
	"context"
	"errors"
	"log/slog"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/governance"
	"github.com/brainhq/eventstream/eventstore"
)

// AggregateName names the aggregate; its streams are "mission-<mission id>".
const AggregateName = "mission"

// Source is the envelope source of the module's events.
const Source = "missions"

// Governance tells a mission what governance recorded about an approval
// and about an IR (governance.Service does).
type Governance interface {
	ApprovalStatus(ctx context.Context, approvalID string) (governance.ApprovalState, error)
	IRStatus(ctx context.Context, irID string) (governance.IRState, error)
}

// Approvals is the former name of Governance.
//
// Deprecated: use Governance.
type Approvals = Governance

// Options configure a Service.
type Options struct {
	Snapshots *aggregates.SnapshotPolicy
	Retry     aggregates.Retry
	Logger    *slog.Logger
}

// Service handles mission commands.
type Service struct {
	repo       *aggregates.Repository[State]
	governance Governance
}

// New returns a Service over store, checking approvals and verdicts with
// gov's records.
func New(store eventstore.Store, reg *aggregates.Registry, gov Governance, opts Options) (*Service, error) {
	repo, err := aggregates.NewRepository(store, reg, aggregates.Definition[State]{
		Name: AggregateName, Source: Source, New: newState, Apply: apply,
		Snapshots: opts.Snapshots, SnapshotSchemaVersion: SnapshotSchemaVersion, Retry: opts.Retry, Logger: opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &Service{repo: repo, governance: gov}, nil
}

// Repository returns the underlying repository.
func (s *Service) Repository() *aggregates.Repository[State] { return s.repo }

// Handle runs one mission command for meta.TenantID; a GrantApproval is
// handled as Service.GrantApproval handles it. A mission takes commands from the tenant that created it
// only: another tenant's is refused with ErrMissionTenant, and its result
// carries nothing of the mission. A RecordValidation and a Start are
// checked against governance's record of the mission's IR, and a Start
// against its record of the approval the mission's stream names (see
// RecordValidation and Start).
func (s *Service) Handle(ctx context.Context, meta aggregates.CommandMeta, c aggregates.Command[State]) (aggregates.Result[State], error) {
	var err error
	switch v := c.(type) {
	case GrantApproval:
		// Decided with governance's record of the approval and the
		// caller's tenant, which only GrantApproval fills in.
		return s.GrantApproval(ctx, meta, v)
	case *GrantApproval:
		return s.GrantApproval(ctx, meta, *v)
	case RecordValidation:
		v.governed, err = s.irRecord(ctx, v.IRID)
		c = v
	case *RecordValidation:
		w := *v
		w.governed, err = s.irRecord(ctx, w.IRID)
		c = w
	case Start:
		v.governed, v.approval, err = s.missionRecords(ctx, meta, v.MissionID)
		c = v
	case *Start:
		w := *v
		w.governed, w.approval, err = s.missionRecords(ctx, meta, w.MissionID)
		c = w
	}
	if err != nil {
		return aggregates.Result[State]{}, err
	}
	res, err := s.repo.Handle(ctx, c.AggregateID(), meta, func(a *aggregates.Aggregate[State]) ([]any, error) {
		if err := sameTenant(a, meta.TenantID); err != nil {
			return nil, err
		}
		return c.Decide(a)
	})
	return hideRefused(meta, res, err)
}

// irRecord returns governance's record of an IR, if it has one. An IR
// governance has no verdict on (nor could have: an id no stream can have)
// is nil, for the decider to refuse after the tenant check.
func (s *Service) irRecord(ctx context.Context, irID string) (*governance.IRState, error) {
	ir, err := s.governance.IRStatus(ctx, irID)
	switch {
	case absent(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &ir, nil
}

// missionRecords returns governance's record of the IR of the mission
// missionID, and of the approval the mission's stream names (nil when it
// names none), for a Start. A mission's IR id never changes once created,
// so the IR record read before the command is decided is the one its
// decider (and a retry's) needs; an approval granted after the read is not
// the one read, and the decider refuses it (ErrApprovalNotConsumed) until
// the Start is sent again. A mission that does not exist, or is another
// tenant's, gets neither: the decider refuses it, saying nothing of it.
func (s *Service) missionRecords(ctx context.Context, meta aggregates.CommandMeta, missionID string) (*governance.IRState, *governance.ApprovalState, error) {
	a, err := s.repo.Load(ctx, missionID)
	switch {
	case absent(err):
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	case a.State.TenantID != meta.TenantID:
		return nil, nil, nil
	}
	ir, err := s.irRecord(ctx, a.State.IRID)
	if err != nil {
		return nil, nil, err
	}
	if a.State.ApprovalID == "" {
		return ir, nil, nil
	}
	ap, err := s.approvalStatus(ctx, a.State.TenantID, a.State.ApprovalID)
	switch {
	case absent(err):
		// An approval governance never created, or another tenant's (an
		// id the stream names, appended raw): the decider refuses it.
		return ir, nil, nil
	case err != nil:
		return nil, nil, err
	}
	return ir, &ap, nil
}

// approvalStatus is governance's record of approval id for tenant: an
// approval of another tenant is, to this one, one governance never created
// (the *aggregates.NotFoundError governance returns for it), so that
// naming it tells the caller nothing, not even that it exists.
func (s *Service) approvalStatus(ctx context.Context, tenant, id string) (governance.ApprovalState, error) {
	ap, err := s.governance.ApprovalStatus(ctx, id)
	if err == nil && ap.TenantID != tenant {
		return governance.ApprovalState{}, approvalNotFound(id)
	}
	return ap, err
}

func approvalNotFound(id string) error {
	return &aggregates.NotFoundError{Aggregate: governance.ApprovalAggregate, ID: id}
}

// absent reports whether err says there is nothing to read: not found, or
// an id no stream can have.
func absent(err error) bool {
	var ve *eventstore.ValidationError
	return errors.Is(err, aggregates.ErrNotFound) || errors.As(err, &ve)
}

// hideRefused drops the mission from the result of a refusal that names
// another tenant: a refused command's result carries the aggregate as
// loaded. A failure on another tenant's mission that is not the tenant
// refusal (a command id that landed on the mission, reused by another
// tenant: ErrCommandReused, naming where it landed) becomes that refusal
// (aggregates.ForTenant), so that nothing tells the caller more than the
// mission is not its own.
func hideRefused(meta aggregates.CommandMeta, res aggregates.Result[State], err error) (aggregates.Result[State], error) {
	return aggregates.ForTenant(meta.TenantID, owner, otherTenant(), res, err)
}

// GrantApproval checks the approval's record in governance and, if it was
// consumed for the mission's IR by the same tenant, for this mission (the
// one it was created or consumed for), records it. Another tenant's
// approval is answered exactly as one governance never created: the
// *aggregates.NotFoundError and an empty result, before the mission is
// read.
func (s *Service) GrantApproval(ctx context.Context, meta aggregates.CommandMeta, c GrantApproval) (aggregates.Result[State], error) {
	ap, err := s.approvalStatus(ctx, meta.TenantID, c.ApprovalID)
	if err != nil {
		return aggregates.Result[State]{}, err
	}
	c.approval, c.tenantID = ap, meta.TenantID
	res, err := s.repo.Execute(ctx, meta, c)
	return hideRefused(meta, res, err)
}

// Load returns the mission, or a *aggregates.NotFoundError.
func (s *Service) Load(ctx context.Context, missionID string) (*aggregates.Aggregate[State], error) {
	return s.repo.Load(ctx, missionID)
}
