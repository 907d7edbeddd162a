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

// Handle runs one mission command for meta.TenantID. Use GrantApproval
// for approvals. A mission takes commands from the tenant that created it
// only: another tenant's is refused with ErrMissionTenant, and its result
// carries nothing of the mission. A RecordValidation is checked against
// governance's record of its IR (see RecordValidation).
func (s *Service) Handle(ctx context.Context, meta aggregates.CommandMeta, c aggregates.Command[State]) (aggregates.Result[State], error) {
	switch rv := c.(type) {
	case RecordValidation:
		if err := s.governed(ctx, &rv); err != nil {
			return aggregates.Result[State]{}, err
		}
		c = rv
	case *RecordValidation:
		v := *rv
		if err := s.governed(ctx, &v); err != nil {
			return aggregates.Result[State]{}, err
		}
		c = v
	}
	res, err := s.repo.Handle(ctx, c.AggregateID(), meta, func(a *aggregates.Aggregate[State]) ([]any, error) {
		if err := sameTenant(a, meta.TenantID); err != nil {
			return nil, err
		}
		return c.Decide(a)
	})
	return hideRefused(res, err)
}

// governed fills in governance's record of c's IR, if it has one. An IR
// governance has no verdict on (nor could have: an id no stream can have)
// leaves it empty, for the decider to refuse after the tenant check.
func (s *Service) governed(ctx context.Context, c *RecordValidation) error {
	ir, err := s.governance.IRStatus(ctx, c.IRID)
	var ve *eventstore.ValidationError
	switch {
	case errors.Is(err, aggregates.ErrNotFound) || errors.As(err, &ve):
		c.governed = nil
	case err != nil:
		return err
	default:
		c.governed = &ir
	}
	return nil
}

// hideRefused drops the mission from the result of a refusal that names
// another tenant: a refused command's result carries the aggregate as
// loaded.
func hideRefused(res aggregates.Result[State], err error) (aggregates.Result[State], error) {
	if errors.Is(err, ErrMissionTenant) || errors.Is(err, ErrApprovalOtherTenant) {
		return aggregates.Result[State]{}, err
	}
	return res, err
}

// GrantApproval checks the approval's record in governance and, if it was
// consumed for the mission's IR by the same tenant, for this mission (the
// one it was created or consumed for), records it.
func (s *Service) GrantApproval(ctx context.Context, meta aggregates.CommandMeta, c GrantApproval) (aggregates.Result[State], error) {
	ap, err := s.governance.ApprovalStatus(ctx, c.ApprovalID)
	if err != nil {
		return aggregates.Result[State]{}, err
	}
	c.approval, c.tenantID = ap, meta.TenantID
	return hideRefused(s.repo.Execute(ctx, meta, c))
}

// Load returns the mission, or a *aggregates.NotFoundError.
func (s *Service) Load(ctx context.Context, missionID string) (*aggregates.Aggregate[State], error) {
	return s.repo.Load(ctx, missionID)
}
