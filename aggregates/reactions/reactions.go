// Package reactions holds the consumers that turn one module's events into
// another module's commands:
//
//   - course.generation.completed → create the course's distribution
//   - distribution.created → deploy the course to staging
//   - course.deployed.staging → record the staging URL on the distribution
//   - mission.created → validate the mission's IR
//   - ir.validated_pass/escalate/reject (for a mission) → record the verdict
//   - ir.approval_consumed (for a mission) → grant the approval
//
// Every reaction is idempotent by construction, so at-least-once delivery
// is enough: the command's target is derived from the event alone, never
// from configuration (the distribution id is a function of the course id,
// see DistributionID), the command id and so
// the ids of the events it writes are derived from the causing event's id
// (aggregates.FromEvent), and each command treats "already done" as done
// and writes nothing. Handle has the plain shape func(ctx, event) error, to
// plug into the projection runtime's idempotent-consumer machinery; Run
// drives the reactions from a store subscription until then.
package reactions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"

	"github.com/brainhq/eventstream/aggregates"
	cf "github.com/brainhq/eventstream/aggregates/coursefactory"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/aggregates/governance"
	"github.com/brainhq/eventstream/aggregates/missions"
	"github.com/brainhq/eventstream/eventstore"
)

// Reaction names; they are also the consumer names under which a runtime
// records processed events, so never rename one.
const (
	CreateDistribution = "course-completed.create-distribution"
	DeployToStaging    = "distribution-created.deploy-staging"
	RecordStagingURL   = "course-deployed.record-staging-url"
	ValidateMissionIR  = "mission-created.validate-ir"
	RecordVerdict      = "ir-validated.record-mission-verdict"
	GrantApproval      = "approval-consumed.grant-mission-approval"
)

// Config configures the reactions.
type Config struct {
	// StagingBaseURL is where staged courses are served; a course's staging
	// URL is StagingBaseURL/courses/<course id>/<distribution id>.
	StagingBaseURL string
	// Channel is the channel of the distribution created for a completed
	// course (default "web"). Changing it applies to courses completed
	// from then on: a course's distribution has one id whatever the
	// channel (DistributionID), so a completion handled again after the
	// change finds it and creates no second one. To offer a course
	// already distributed on another channel too, issue
	// distribution.Create for it.
	Channel string
	Logger  *slog.Logger
}

// Reaction is one consumer: its name, the event types it takes, and its
// handler.
type Reaction struct {
	Name   string
	Types  []string
	Handle func(ctx context.Context, e eventstore.Event) error
}

// Reactions are the module-to-module consumers.
type Reactions struct {
	svc  *domain.Services
	cfg  Config
	log  *slog.Logger
	list []Reaction
	by   map[string][]Reaction
}

// New returns the reactions over the modules' services.
func New(svc *domain.Services, cfg Config) (*Reactions, error) {
	if cfg.Channel == "" {
		cfg.Channel = distribution.ChannelWeb
	}
	if !slices.Contains(distribution.Channels(), cfg.Channel) {
		return nil, fmt.Errorf("reactions: Channel %q: want one of %v", cfg.Channel, distribution.Channels())
	}
	u, err := url.Parse(cfg.StagingBaseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("reactions: StagingBaseURL %q: want an absolute URL", cfg.StagingBaseURL)
	}
	r := &Reactions{svc: svc, cfg: cfg, log: cfg.Logger, by: map[string][]Reaction{}}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.list = []Reaction{
		{CreateDistribution, []string{cf.TypeGenerationCompleted}, r.createDistribution},
		{DeployToStaging, []string{distribution.TypeCreated}, r.deployToStaging},
		{RecordStagingURL, []string{cf.TypeDeployedStaging}, r.recordStagingURL},
		{ValidateMissionIR, []string{missions.TypeCreated}, r.validateMissionIR},
		{RecordVerdict, []string{governance.TypeValidatedPass, governance.TypeValidatedEscalate, governance.TypeValidatedReject}, r.recordVerdict},
		{GrantApproval, []string{governance.TypeApprovalConsumed}, r.grantApproval},
	}
	for _, x := range r.list {
		for _, t := range x.Types {
			r.by[t] = append(r.by[t], x)
		}
	}
	return r, nil
}

// List returns every reaction.
func (r *Reactions) List() []Reaction { return append([]Reaction(nil), r.list...) }

// Types returns the event types some reaction takes, sorted.
func (r *Reactions) Types() []string {
	out := make([]string, 0, len(r.by))
	for t := range r.by {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Handle runs every reaction that takes e's type; events no reaction takes
// are ignored. Handling an event again changes nothing.
func (r *Reactions) Handle(ctx context.Context, e eventstore.Event) error {
	var errs []error
	for _, x := range r.by[e.Type] {
		if err := x.Handle(ctx, e); err != nil {
			errs = append(errs, fmt.Errorf("reaction %s to %s %s: %w", x.Name, e.Type, e.ID, err))
		}
	}
	return errors.Join(errs...)
}

// RunOptions say where Run starts and what it reports.
type RunOptions struct {
	// After is the position to start after (Start: the whole log).
	After eventstore.Position
	// Handled, when set, is called after each event is handled, with its
	// position, so a caller can keep a checkpoint. A refused event counts
	// as handled.
	Handled func(eventstore.Position)
	// Refused, when set, is called with each event a reaction refused for
	// good (see Refusal) and the refusal, before Handled, so a caller can
	// keep it as a dead letter. Run logs it either way and goes on.
	Refused func(eventstore.Event, error)
}

// Refusal reports whether err, returned by Handle, is a refusal that
// handling the event again cannot change: an invariant refused a
// reaction's command (aggregates.ErrRefused), the command's aggregate does
// not exist (aggregates.ErrNotFound), the store refused its events
// (eventstore.ErrValidation), the command id derived from the event
// landed with other events (aggregates.ErrCommandReused: the reaction
// decides otherwise than when it first handled the event), or the event
// cannot be read as its Go type (a *DecodeError). When several reactions
// failed, it is a refusal only when every one of them was refused.
func Refusal(err error) bool {
	if err == nil {
		return false
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		for _, e := range errs {
			if !Refusal(e) {
				return false
			}
		}
		return len(errs) > 0
	}
	var de *DecodeError
	return errors.Is(err, aggregates.ErrRefused) || errors.Is(err, aggregates.ErrNotFound) || errors.Is(err, eventstore.ErrValidation) ||
		errors.Is(err, aggregates.ErrCommandReused) || errors.As(err, &de)
}

// DecodeError is an event a reaction cannot read as the Go type of its
// type: the type has no Go type, its schema version no upcaster chain
// (an *aggregates.UnknownEventError), or its payload does not decode.
// The same code meets it again on every delivery, so it is a Refusal:
// parked or skipped, not retried until the runner gives up.
type DecodeError struct {
	Type    string
	EventID string
	Err     error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("reactions: cannot read %s %s: %v", e.Type, e.EventID, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Run subscribes to the reactions' event types and handles each event
// until ctx ends or a reaction fails with an error that another attempt
// might not meet (the store unreachable, a lost race after every retry);
// the caller restarts it from its last checkpoint (a redelivered event
// changes nothing). An event a reaction refuses for good (Refusal) does
// not stop it: the refusal is logged and given to RunOptions.Refused, the
// event counts as handled, and Run goes on with the next one. Stopping
// there would refuse the same event again on every restart, and no later
// event would ever be handled.
func (r *Reactions) Run(ctx context.Context, store eventstore.Store, opts RunOptions) error {
	sub, err := store.Subscribe(ctx, eventstore.SubscribeOptions{After: opts.After, Types: r.Types()})
	if err != nil {
		return fmt.Errorf("reactions: subscribe: %w", err)
	}
	defer sub.Close()
	for {
		evs, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := r.Handle(ctx, e); err != nil {
				if ctx.Err() != nil || !Refusal(err) {
					return err
				}
				r.log.Warn("reactions: event refused; skipped", "event_id", e.ID, "type", e.Type, "stream", e.Stream, "position", e.Position.String(), "error", err)
				if opts.Refused != nil {
					opts.Refused(e, err)
				}
			}
			if opts.Handled != nil {
				opts.Handled(e.Position)
			}
		}
	}
}

// decode returns e's payload as T (upcast to the newest version), or a
// *DecodeError.
func decode[T any](r *Reactions, e eventstore.Event) (T, error) {
	var zero T
	v, err := r.decodeAny(e)
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		return zero, &DecodeError{Type: e.Type, EventID: e.ID.String(), Err: fmt.Errorf("decodes to %T, not %T", v, zero)}
	}
	return t, nil
}

// decodeAny returns e's payload as its Go type, or a *DecodeError.
func (r *Reactions) decodeAny(e eventstore.Event) (any, error) {
	v, err := r.svc.Registry.Decode(e)
	if err != nil {
		return nil, &DecodeError{Type: e.Type, EventID: e.ID.String(), Err: err}
	}
	return v, nil
}

// ErrForeignEvent refuses a course or distribution event whose payload
// names another aggregate than the stream it was appended to. The
// modules never write one; a raw append can (the API checks who owns a
// stream, not what its payload names), and acting on it would let one
// tenant's event create or deploy for another tenant's course.
var ErrForeignEvent = aggregates.Rule("reaction-own-stream", "a course or distribution event is acted on only in its aggregate's own stream")

// named is what fromOwnStream needs of a repository.
type named interface {
	Name() string
	Stream(id string) string
}

// fromOwnStream refuses e unless it is in the stream of the aggregate id
// its payload names.
func (r *Reactions) fromOwnStream(e eventstore.Event, repo named, id string) error {
	if want := repo.Stream(id); e.Stream != want {
		return &aggregates.RuleError{Aggregate: repo.Name(), ID: id, Rule: ErrForeignEvent.Rule,
			Message: fmt.Sprintf("%s %s is in stream %q, not %q", e.Type, e.ID, e.Stream, want)}
	}
	return nil
}

// StagingURL is the staging address of a course's distribution.
func (r *Reactions) StagingURL(courseID, distributionID string) string {
	return r.cfg.StagingBaseURL + "/courses/" + url.PathEscape(courseID) + "/" + url.PathEscape(distributionID)
}

// DistributionID is the id of the distribution the course-completed
// reaction creates for a course. It is a function of the course alone, not
// of Config.Channel, so that a completion handled again after the channel
// changed (a redelivery, a replay, a parked event retried, another
// deployment configured otherwise) names the distribution already created
// rather than a second one on the new channel. It is
// distribution.IDForCourse(courseID, "web"): the id the reaction gave
// every distribution while it keyed them by the configured channel and
// that channel was the default, so those keep their ids.
func DistributionID(courseID string) string {
	return distribution.IDForCourse(courseID, distribution.ChannelWeb)
}

// createDistribution creates the course's distribution (DistributionID)
// on the configured channel, unless the course has it already, on
// whichever channel: the channel applies to courses completed from the
// time it is configured, and a course already offered keeps its offering.
func (r *Reactions) createDistribution(ctx context.Context, e eventstore.Event) error {
	d, err := decode[cf.GenerationCompleted](r, e)
	if err != nil {
		return err
	}
	if err := r.fromOwnStream(e, r.svc.Courses.Repository(), d.CourseID); err != nil {
		return err
	}
	create := distribution.Create{
		DistributionID: DistributionID(d.CourseID),
		CourseID:       d.CourseID,
		Channel:        r.cfg.Channel,
		Title:          d.Title,
	}
	_, err = r.svc.Distributions.HandleFunc(ctx, create.AggregateID(), aggregates.FromEvent(e, CreateDistribution),
		func(a *aggregates.Aggregate[distribution.State]) ([]any, error) {
			if a.Exists() && !a.State.Deleted && a.State.CourseID == d.CourseID {
				return nil, nil // created before, maybe on another channel
			}
			return create.Decide(a)
		})
	return err
}

// deployToStaging deploys a new distribution's course to staging, unless
// the course has been deployed for that distribution already, to
// whichever URL: a distribution is created once, so a deployment is this
// reaction's done, and a redelivery after Config.StagingBaseURL changed
// (or after someone deployed it elsewhere since) leaves the deployment as
// it is instead of deciding a new one under the same command id.
func (r *Reactions) deployToStaging(ctx context.Context, e eventstore.Event) error {
	d, err := decode[distribution.Created](r, e)
	if err != nil {
		return err
	}
	if err := r.fromOwnStream(e, r.svc.Distributions.Repository(), d.DistributionID); err != nil {
		return err
	}
	deploy := cf.DeployStaging{
		CourseID:       d.CourseID,
		DistributionID: d.DistributionID,
		StagingURL:     r.StagingURL(d.CourseID, d.DistributionID),
	}
	_, err = r.svc.Courses.HandleFunc(ctx, deploy.AggregateID(), aggregates.FromEvent(e, DeployToStaging),
		func(a *aggregates.Aggregate[cf.State]) ([]any, error) {
			if _, ok := a.State.Deployments[d.DistributionID]; ok && a.Exists() {
				return nil, nil
			}
			return deploy.Decide(a)
		})
	return err
}

// recordStagingURL records a deployment's staging URL on its
// distribution, unless the course has been deployed for that distribution
// again since, to another URL: then the event is stale (an older event
// parked and retried after the newer one went through, or handled by a
// slower consumer) and writing its URL would put the older address back.
// The newer deployment's own event records the newer URL. A deployment
// of a distribution deleted meanwhile records nothing either.
//
// The course is read inside the decider, after the distribution is loaded
// and before the update is appended at that distribution version: when a
// newer deployment's update lands in between, the append loses the race,
// and the retry reads the course again and sees the newer deployment.
func (r *Reactions) recordStagingURL(ctx context.Context, e eventstore.Event) error {
	d, err := decode[cf.DeployedStaging](r, e)
	if err != nil {
		return err
	}
	u := d.StagingURL
	update := distribution.Update{
		DistributionID: d.DistributionID,
		CourseID:       d.CourseID, // a deployment may name any distribution id
		Changes:        distribution.Changes{StagingURL: &u},
	}
	if err := r.fromOwnStream(e, r.svc.Courses.Repository(), d.CourseID); err != nil {
		return err
	}
	_, err = r.svc.Distributions.HandleFunc(ctx, update.AggregateID(), aggregates.FromEvent(e, RecordStagingURL),
		func(a *aggregates.Aggregate[distribution.State]) ([]any, error) {
			if a.Exists() && a.State.Deleted {
				// Deleted while the deployment ran: there is no staging URL
				// to keep, and refusing would park a dead letter for it.
				return nil, nil
			}
			course, err := r.svc.Courses.Load(ctx, d.CourseID)
			if err != nil {
				return nil, err
			}
			if current, ok := course.State.Deployments[d.DistributionID]; ok && current != d.StagingURL {
				return nil, nil // stale: a newer deployment of this distribution exists
			}
			return update.Decide(a)
		})
	return err
}

func (r *Reactions) validateMissionIR(ctx context.Context, e eventstore.Event) error {
	d, err := decode[missions.Created](r, e)
	if err != nil {
		return err
	}
	res, err := r.svc.Governance.ValidateIR(ctx, aggregates.FromEvent(e, ValidateMissionIR), governance.ValidateIR{
		IR: governance.IR{ID: d.IRID, Steps: d.Steps}, MissionID: d.MissionID,
	})
	if err != nil || len(res.Events) > 0 || res.Aggregate == nil {
		// A verdict written now reaches the mission through its own
		// event (recordVerdict).
		return err
	}
	// Governance had recorded the verdict for this mission already: a
	// redelivery, or a ValidateIR naming the mission sent before the
	// mission existed, whose event met no mission and was refused for
	// good. Its verdict is recorded here, or the mission would wait in
	// created for ever.
	m, err := r.svc.Missions.Load(ctx, d.MissionID)
	if errors.Is(err, aggregates.ErrNotFound) {
		return nil // a mission.created outside the mission's stream
	}
	if err != nil || m.State.Status != missions.StatusCreated || m.State.TenantID != e.Meta.TenantID {
		return err
	}
	g := res.Aggregate.State
	if g.Outcome == "" || !slices.Contains(g.Missions, d.MissionID) {
		return nil
	}
	_, err = r.svc.Missions.Handle(ctx, aggregates.FromEvent(e, RecordVerdict), missions.RecordValidation{
		MissionID: d.MissionID, IRID: g.IRID, Outcome: g.Outcome, MaxTier: g.MaxTier, Rule: g.Rule,
	})
	return err
}

func (r *Reactions) recordVerdict(ctx context.Context, e eventstore.Event) error {
	v, err := r.decodeAny(e)
	if err != nil {
		return err
	}
	var c missions.RecordValidation
	switch d := v.(type) {
	case governance.ValidatedPass:
		c = missions.RecordValidation{MissionID: d.MissionID, IRID: d.IRID, Outcome: governance.OutcomePass, MaxTier: d.MaxTier}
	case governance.ValidatedEscalate:
		c = missions.RecordValidation{MissionID: d.MissionID, IRID: d.IRID, Outcome: governance.OutcomeEscalate, MaxTier: d.MaxTier}
	case governance.ValidatedReject:
		c = missions.RecordValidation{MissionID: d.MissionID, IRID: d.IRID, Outcome: governance.OutcomeReject, Rule: d.Rule}
	default:
		return &DecodeError{Type: e.Type, EventID: e.ID.String(), Err: fmt.Errorf("unexpected payload %T", v)}
	}
	if c.MissionID == "" {
		return nil // an IR validated outside any mission
	}
	_, err = r.svc.Missions.Handle(ctx, aggregates.FromEvent(e, RecordVerdict), c)
	return err
}

func (r *Reactions) grantApproval(ctx context.Context, e eventstore.Event) error {
	d, err := decode[governance.ApprovalConsumed](r, e)
	if err != nil {
		return err
	}
	if d.MissionID == "" {
		return nil
	}
	_, err = r.svc.Missions.GrantApproval(ctx, aggregates.FromEvent(e, GrantApproval), missions.GrantApproval{MissionID: d.MissionID, ApprovalID: d.ApprovalID})
	return err
}
