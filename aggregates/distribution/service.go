// Package distribution is the course_distribution module: a course offered
// on a channel, event-sourced. Nothing follows a deletion; a distribution
// is published only when it is not; views and enrollment clicks are
// recorded only while it is published; its version moves by semantic
// versioning steps (major, minor, patch).
package distribution

import (
	"context"
	"log/slog"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/eventstore"
)

// AggregateName names the aggregate; its streams are "distribution-<distribution id>".
const AggregateName = "distribution"

// Source is the envelope source of the module's events.
const Source = "course_distribution"

// Options configure a Service.
type Options struct {
	// Snapshots opts distributions into snapshots (SchemaVersion is set to
	// SnapshotSchemaVersion when zero).
	Snapshots *aggregates.SnapshotPolicy
	Retry     aggregates.Retry
	Logger    *slog.Logger
}

// Service handles distribution commands.
type Service struct {
	repo *aggregates.Repository[State]
}

// New returns a Service over store. reg must have had Register called and
// passed Check.
func New(store eventstore.Store, reg *aggregates.Registry, opts Options) (*Service, error) {
	repo, err := aggregates.NewRepository(store, reg, aggregates.Definition[State]{
		Name:      AggregateName,
		Source:    Source,
		New:       newState,
		Apply:     apply,
		Snapshots: opts.Snapshots, SnapshotSchemaVersion: SnapshotSchemaVersion,
		Retry:  opts.Retry,
		Logger: opts.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &Service{repo: repo}, nil
}

// Repository returns the underlying repository.
func (s *Service) Repository() *aggregates.Repository[State] { return s.repo }

// Handle runs one distribution command for meta.TenantID (see
// HandleFunc).
func (s *Service) Handle(ctx context.Context, meta aggregates.CommandMeta, c aggregates.Command[State]) (aggregates.Result[State], error) {
	return s.HandleFunc(ctx, c.AggregateID(), meta, c.Decide)
}

// HandleFunc runs decide against distribution id for meta.TenantID. A
// distribution takes commands from the tenant that created it only:
// another tenant's is refused with ErrTenant, and neither the refusal nor
// its result carries anything of the distribution, whatever else Handle
// met (a command id that landed on the distribution, sent again by
// another tenant, is that refusal, not ErrCommandReused).
func (s *Service) HandleFunc(ctx context.Context, id string, meta aggregates.CommandMeta, decide aggregates.Decider[State]) (aggregates.Result[State], error) {
	res, err := s.repo.Handle(ctx, id, meta, func(a *aggregates.Aggregate[State]) ([]any, error) {
		if err := sameTenant(a, meta.TenantID); err != nil {
			return nil, err
		}
		return decide(a)
	})
	return aggregates.ForTenant(meta.TenantID, owner, otherTenant(), res, err)
}

// Load returns the distribution, or a *aggregates.NotFoundError.
func (s *Service) Load(ctx context.Context, distributionID string) (*aggregates.Aggregate[State], error) {
	return s.repo.Load(ctx, distributionID)
}
