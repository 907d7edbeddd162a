// Package governance is the ir_governance module: human-in-the-loop
// approvals of an intermediate representation (IR, a plan of steps each
// with an action and a risk tier), validation of an IR against policy, and
// integrity of the execution DAG compiled from it.
//
// Two aggregates: an approval (stream "approval-<id>") stores only a hash
// of its token and an expiry, is consumed once, by someone else than who
// requested it, and records refused uses (unknown approval, token
// mismatch, already consumed, tenant mismatch, mission mismatch, self
// approval, unnamed approver) as ir.approval_invalid for security
// alerting; an IR (stream "ir-<id>") is validated once (pass: tiers 0–1;
// escalate: some tier 2+; reject: a forbidden action, naming the rule),
// its verdict is recorded for each mission that runs it, and every DAG
// compiled from it is compared with its steps. Time comes from an
// injectable clock, so expiry is tested without sleeping.
package governance

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/eventstore"
)

// Aggregate names; streams are "<name>-<id>".
const (
	ApprovalAggregate = "approval"
	IRAggregate       = "ir"
)

// Source is the envelope source of the module's events.
const Source = "ir_governance"

// Options configure a Service.
type Options struct {
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Policy is what IRs are validated against (zero: DefaultPolicy()).
	Policy *Policy
	// Token returns a new approval token (nil: 32 random bytes, base64url).
	Token  func() (string, error)
	Retry  aggregates.Retry
	Logger *slog.Logger
}

// Service handles approvals and IR validation.
type Service struct {
	store     eventstore.Store
	approvals *aggregates.Repository[ApprovalState]
	irs       *aggregates.Repository[IRState]
	now       func() time.Time
	policy    Policy
	token     func() (string, error)
}

// New returns a Service over store. reg must have had Register called and
// passed Check.
func New(store eventstore.Store, reg *aggregates.Registry, opts Options) (*Service, error) {
	s := &Service{store: store, now: opts.Now, token: opts.Token, policy: DefaultPolicy()}
	if s.now == nil {
		s.now = time.Now
	}
	if s.token == nil {
		s.token = randomToken
	}
	if opts.Policy != nil {
		s.policy = *opts.Policy
	}
	var err error
	s.approvals, err = aggregates.NewRepository(store, reg, aggregates.Definition[ApprovalState]{
		Name: ApprovalAggregate, Source: Source, New: newApproval, Apply: applyApproval, Retry: opts.Retry, Logger: opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	s.irs, err = aggregates.NewRepository(store, reg, aggregates.Definition[IRState]{
		Name: IRAggregate, Source: Source, New: newIR, Apply: applyIR, Retry: opts.Retry, Logger: opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// createdAt reports whether the event at version of an approval's stream
// is its ir.approval_created: whether the command whose first event
// landed there created the approval. It is not always at version 1: an
// id presented before the approval was created has its unknown_approval
// record first. A read that fails is an error: whether the command
// created the approval is then unknown, not "no".
func (s *Service) createdAt(ctx context.Context, stream string, version int64) (bool, error) {
	if version <= 0 {
		return false, nil // not said
	}
	evs, err := s.store.ReadStream(ctx, stream, version, 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return len(evs) == 1 && evs[0].Version == version && evs[0].Type == TypeApprovalCreated, nil
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("governance: token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Approvals returns the approval repository.
func (s *Service) Approvals() *aggregates.Repository[ApprovalState] { return s.approvals }

// IRs returns the IR repository.
func (s *Service) IRs() *aggregates.Repository[IRState] { return s.irs }

// CreateApproval creates an approval valid for ttl and returns its token,
// the only time the token is seen (c.Token, when set, is used instead of a
// new one; c.ExpiresAt, when set, instead of now+ttl). A command meant to
// be retried (the same CommandMeta.ID) must set both: a retry of one whose
// token the service made is refused with ErrApprovalExists, since the
// token it returned cannot be given again. An id another
// tenant's approval has is refused with ErrApprovalExists and an empty
// result: nothing of that approval.
func (s *Service) CreateApproval(ctx context.Context, meta aggregates.CommandMeta, c CreateApproval, ttl time.Duration) (string, aggregates.Result[ApprovalState], error) {
	c.now, c.tenantID = s.now(), meta.TenantID
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = c.now.Add(ttl)
	}
	tokenMade := c.Token == ""
	if tokenMade {
		t, err := s.token()
		if err != nil {
			return "", aggregates.Result[ApprovalState]{}, err
		}
		c.Token = t
	}
	res, err := s.approvals.Execute(ctx, meta, c)
	if err != nil {
		var reused *aggregates.CommandReusedError
		created := false
		if a := res.Aggregate; tokenMade && errors.As(err, &reused) && a != nil && a.State.Created &&
			a.State.TenantID == meta.TenantID && a.State.IRID == c.IRID && a.State.MissionID == c.MissionID && a.State.RequestedBy == c.RequestedBy {
			var rerr error
			if created, rerr = s.createdAt(ctx, a.Stream, reused.Version); rerr != nil {
				// The approval is the caller's tenant's (checked above).
				return "", res, fmt.Errorf("governance: approval %s: command %s was refused (%v) and whether it created the approval is unknown: %w",
					c.ApprovalID, reused.CommandID, err, rerr)
			}
		}
		if created {
			// This command created the approval: the retry made a new
			// token, so it decides other events. The first answer cannot
			// be given again (only the token's hash is stored).
			return "", res, &aggregates.RuleError{Aggregate: ApprovalAggregate, ID: c.ApprovalID, Rule: ErrApprovalExists.Rule,
				Message: "this command id created the approval; its token was returned by that call only, and a retry makes a new one. " +
					"A CreateApproval meant to be retried must carry its own Token and ExpiresAt"}
		}
		if a := res.Aggregate; a != nil && a.State.Created && a.State.TenantID != meta.TenantID {
			// A refused command's result carries the approval as loaded
			// (its token's hash, IR, mission, requester): not another
			// tenant's.
			res, err = aggregates.ForTenant(meta.TenantID, approvalOwner, aggregates.Refuse(ErrApprovalExists, "the approval id is taken"), res, err)
		}
		return "", res, err
	}
	return c.Token, res, nil
}

// ConsumeApproval uses an approval on behalf of meta.TenantID. A refused
// use returns a *aggregates.RuleError and, except for an approval already
// recorded as expired, records the attempt.
//
// Another tenant's attempt is recorded for the approval's tenant
// (tenant_mismatch), and answered exactly as an attempt on an approval
// that does not exist: ErrUnknownApproval with the same message, and an
// empty result (an unknown approval's refusal carries no result either),
// whatever else Handle met (a command id that landed on the approval,
// sent again by another tenant, is that refusal, not ErrCommandReused; it
// is not recorded, since the record's event id would be the landed one).
// So naming another tenant's approval id tells the caller nothing, not
// even that it exists.
func (s *Service) ConsumeApproval(ctx context.Context, meta aggregates.CommandMeta, c ConsumeApproval) (aggregates.Result[ApprovalState], error) {
	if !validApprovalID(c.ApprovalID) {
		// No approval has this id, and the attempt cannot be recorded:
		// ir.approval_invalid names the approval by its UUID.
		return aggregates.Result[ApprovalState]{}, &aggregates.RuleError{
			Aggregate: ApprovalAggregate, ID: boundText(c.ApprovalID, 64), Rule: ErrUnknownApproval.Rule,
			Message: "no approval has this id (approval ids are UUIDs); not recorded",
		}
	}
	c.tenantID, c.now = meta.TenantID, s.now()
	// The attempt is recorded for the approval's tenant; the result (the
	// approval as loaded: its token's hash, IR, mission, expiry, consumer;
	// the record) is not the presenter's to see.
	res, err := s.approvals.Execute(ctx, meta, c)
	return aggregates.ForTenant(meta.TenantID, approvalOwner, aggregates.Refuse(ErrUnknownApproval, "%s", unknownApprovalMessage(c.ApprovalID)), res, err)
}

func approvalOwner(s ApprovalState) string { return s.TenantID }

func irOwner(s IRState) string { return s.TenantID }

// otherIRTenant is the refusal of a command on an IR of another tenant.
func otherIRTenant(id string) *aggregates.RuleError {
	return aggregates.Refuse(ErrIRTenant, "IR %s was validated for another tenant", id)
}

// ExpireApproval records the expiry of an unused approval past its expiry,
// for the approval's tenant: a sweeper sweeps as that tenant. Another
// tenant's approval is answered exactly as one that does not exist: a
// *aggregates.NotFoundError with the same message and an empty result,
// with nothing written, whatever the approval's state and whatever else
// Handle met (a command id that landed on the approval, sent again by
// another tenant, is that answer, not ErrCommandReused). So sweeping
// another tenant's approval id tells the caller nothing, not even that it
// exists.
func (s *Service) ExpireApproval(ctx context.Context, meta aggregates.CommandMeta, approvalID string) (aggregates.Result[ApprovalState], error) {
	if !validApprovalID(approvalID) {
		return aggregates.Result[ApprovalState]{}, approvalNotFound(approvalID)
	}
	res, err := s.approvals.Execute(ctx, meta, ExpireApproval{ApprovalID: approvalID, now: s.now(), tenantID: meta.TenantID})
	if err != nil && (errors.Is(err, aggregates.ErrNotFound) || res.Aggregate != nil && res.Aggregate.State.TenantID != meta.TenantID) {
		// The same answer for an approval that does not exist and for
		// another tenant's: the result of a refused command carries the
		// approval as loaded.
		return aggregates.Result[ApprovalState]{}, approvalNotFound(approvalID)
	}
	return res, err
}

// ValidateIR validates an IR against the service's policy.
func (s *Service) ValidateIR(ctx context.Context, meta aggregates.CommandMeta, c ValidateIR) (aggregates.Result[IRState], error) {
	c.policy, c.tenantID = s.policy, meta.TenantID
	// A refused command's result carries the aggregate as loaded: not
	// another tenant's IR.
	res, err := s.irs.Execute(ctx, meta, c)
	return aggregates.ForTenant(meta.TenantID, irOwner, otherIRTenant(c.IR.ID), res, err)
}

// CheckDAG compares a compiled DAG with its IR, for the IR's tenant.
func (s *Service) CheckDAG(ctx context.Context, meta aggregates.CommandMeta, c CheckDAG) (aggregates.Result[IRState], error) {
	c.tenantID = meta.TenantID
	res, err := s.irs.Execute(ctx, meta, c)
	return aggregates.ForTenant(meta.TenantID, irOwner, otherIRTenant(c.IRID), res, err)
}

// ApprovalStatus says whether approvalID was consumed, for which IR and
// tenant (used by missions to check an approval before a mission starts).
func (s *Service) ApprovalStatus(ctx context.Context, approvalID string) (ApprovalState, error) {
	if !validApprovalID(approvalID) {
		return ApprovalState{}, approvalNotFound(approvalID)
	}
	a, err := s.approvals.Load(ctx, approvalID)
	if err != nil {
		return ApprovalState{}, err
	}
	if !a.State.Created {
		return ApprovalState{}, a.NotFound()
	}
	return a.State, nil
}

// IRStatus returns governance's record of an IR: its verdict, the SHA-256
// of the plan it was given for, the tenant it was validated for, and the
// missions it was recorded for (used by missions to check a verdict before
// recording it). An IR with no verdict is a *aggregates.NotFoundError.
func (s *Service) IRStatus(ctx context.Context, irID string) (IRState, error) {
	if irID == "" {
		return IRState{}, &aggregates.NotFoundError{Aggregate: IRAggregate}
	}
	a, err := s.irs.Load(ctx, irID)
	if err != nil {
		return IRState{}, err
	}
	if a.State.Outcome == "" {
		return IRState{}, a.NotFound()
	}
	return a.State, nil
}

// validApprovalID reports whether id can be an approval's: a UUID, as the
// schemas' "uuid" format (which ir.approval_created checks) takes it.
func validApprovalID(id string) bool {
	return jsonschema.Formats["uuid"](id)
}

func approvalNotFound(id string) error {
	return &aggregates.NotFoundError{Aggregate: ApprovalAggregate, ID: boundText(id, 64)}
}
