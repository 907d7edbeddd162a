// Package coursefactory is the course_factory module: a course being
// generated, event-sourced. A course moves through an explicit workflow
// (requested → outlining → generating → review → completed | failed, then
// deployed), each change recorded as course.workflow.transitioned. Lessons
// come only after an outline and only for the slots it declares, each once;
// completion needs the outline, every lesson, the quiz and the landing
// page; a failed course accepts nothing but a new request.
package coursefactory

import (
	"context"
	"log/slog"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/eventstore"
)

// AggregateName names the aggregate; its streams are "course-<course id>".
const AggregateName = "course"

// Source is the envelope source of the module's events.
const Source = "course_factory"

// Options configure a Service.
type Options struct {
	// Snapshots opts courses into snapshots (SchemaVersion is set to
	// SnapshotSchemaVersion when zero).
	Snapshots *aggregates.SnapshotPolicy
	Retry     aggregates.Retry
	Logger    *slog.Logger
}

// Service handles course commands.
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

// Handle runs one course command for meta.TenantID. A course takes
// commands from the tenant that requested it only: another tenant's is
// refused with ErrCourseTenant, and neither the refusal nor its result
// carries anything of the course, whatever else Handle met (a command id
// that landed on the course, sent again by another tenant, is that
// refusal, not ErrCommandReused). (A reaction's command has the tenant of the event that caused
// it, so a distribution another tenant created for this course does not
// deploy it.)
func (s *Service) Handle(ctx context.Context, meta aggregates.CommandMeta, c aggregates.Command[State]) (aggregates.Result[State], error) {
	return s.HandleFunc(ctx, c.AggregateID(), meta, c.Decide)
}

// HandleFunc runs decide against course id for meta.TenantID, with the
// tenant rule of Handle.
func (s *Service) HandleFunc(ctx context.Context, id string, meta aggregates.CommandMeta, decide aggregates.Decider[State]) (aggregates.Result[State], error) {
	res, err := s.repo.Handle(ctx, id, meta, func(a *aggregates.Aggregate[State]) ([]any, error) {
		if err := sameTenant(a, meta.TenantID); err != nil {
			return nil, err
		}
		return decide(a)
	})
	return aggregates.ForTenant(meta.TenantID, owner, otherTenant(), res, err)
}

// Load returns the course, or a *aggregates.NotFoundError.
func (s *Service) Load(ctx context.Context, courseID string) (*aggregates.Aggregate[State], error) {
	return s.repo.Load(ctx, courseID)
}
