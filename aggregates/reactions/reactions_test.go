package reactions_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	cf "github.com/brainhq/eventstream/aggregates/coursefactory"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/aggregates/governance"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/aggregates/missions"
	"github.com/brainhq/eventstream/aggregates/reactions"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/syncbuf"
)

var ctx = context.Background()

func newReactions(t *testing.T, env *dt.Env) *reactions.Reactions {
	t.Helper()
	r, err := reactions.New(env.Services, reactions.Config{StagingBaseURL: "https://staging.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pump delivers every event of the log after from to the reactions, each
// twice, until the log stops growing; it returns the new position.
func pump(t *testing.T, env *dt.Env, r *reactions.Reactions, from eventstore.Position) eventstore.Position {
	t.Helper()
	for range 20 {
		page, err := env.Store.ReadAll(ctx, eventstore.ReadAllOptions{From: from, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			return from
		}
		for _, e := range page.Events {
			for range 2 {
				if err := r.Handle(ctx, e); err != nil {
					t.Fatalf("handle %s: %v", e.Type, err)
				}
			}
		}
		from = page.Next
	}
	t.Fatal("the reactions did not settle")
	return from
}

// redeliverChangesNothing delivers the whole log again (each event twice)
// and fails t unless the log's head stays at before.
func redeliverChangesNothing(t *testing.T, env *dt.Env, r *reactions.Reactions, before eventstore.Position) {
	t.Helper()
	pump(t, env, r, eventstore.Start)
	if after := dt.Head(t, env.Store); after != before {
		t.Fatalf("a redelivery of the whole log moved it from %s to %s", before, after)
	}
}

func countTypes(t *testing.T, env *dt.Env) map[string]int {
	t.Helper()
	page, err := env.Store.ReadAll(ctx, eventstore.ReadAllOptions{Limit: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range page.Events {
		n[e.Type]++
	}
	return n
}

// completeCourse drives a course to completion, all under correlation corr.
func completeCourse(t *testing.T, env *dt.Env, corr string) string {
	t.Helper()
	id := uuid.NewString()
	meta := aggregates.CommandMeta{TenantID: "t1", CorrelationID: corr}
	for _, c := range []aggregates.Command[cf.State]{
		cf.RequestGeneration{CourseID: id, Topic: "Event sourcing"},
		cf.StartOutlining{CourseID: id},
		cf.CreateOutline{CourseID: id, Title: "Event sourcing", Lessons: []cf.LessonSlot{{Slot: 1, Title: "Logs"}}},
		cf.GenerateLesson{CourseID: id, Slot: 1, Title: "Logs"},
		cf.CreateQuiz{CourseID: id, QuizID: uuid.NewString(), QuestionCount: 5},
		cf.CreateLandingPage{CourseID: id, Headline: "Learn event sourcing", Slug: "event-sourcing"},
		cf.SubmitForReview{CourseID: id},
		cf.Complete{CourseID: id},
	} {
		if _, err := env.Courses.Handle(ctx, meta, c); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	return id
}

func checkCourseFlow(t *testing.T, env *dt.Env, r *reactions.Reactions, course, corr string) {
	t.Helper()
	distID := distribution.IDForCourse(course, distribution.ChannelWeb)
	d, err := env.Distributions.Load(ctx, distID)
	if err != nil {
		t.Fatalf("the course's distribution: %v", err)
	}
	wantURL := r.StagingURL(course, distID)
	if d.State.CourseID != course || d.State.StagingURL != wantURL || d.Version != 2 {
		t.Fatalf("distribution = %+v at v%d, want course %s, staging URL %s, v2", d.State, d.Version, course, wantURL)
	}
	c, err := env.Courses.Load(ctx, course)
	if err != nil {
		t.Fatal(err)
	}
	if c.State.Workflow != cf.Deployed || c.State.Deployments[distID] != wantURL {
		t.Fatalf("course = %+v", c.State)
	}
	// The whole flow shares the correlation id, and each reaction's event
	// names its cause.
	page, _ := env.Store.ReadAll(ctx, eventstore.ReadAllOptions{Limit: 10_000})
	byID := map[string]eventstore.Event{}
	for _, e := range page.Events {
		byID[e.ID.String()] = e
	}
	for _, e := range page.Events {
		if e.Meta.CorrelationID != corr {
			continue
		}
		var wantCause string
		switch e.Type {
		case distribution.TypeCreated:
			wantCause = cf.TypeGenerationCompleted
		case cf.TypeDeployedStaging:
			wantCause = distribution.TypeCreated
		case distribution.TypeUpdated:
			wantCause = cf.TypeDeployedStaging
		default:
			continue
		}
		if cause, ok := byID[e.Meta.CausationID]; !ok || cause.Type != wantCause {
			t.Fatalf("%s caused by %q (%s), want a %s", e.Type, e.Meta.CausationID, cause.Type, wantCause)
		}
	}
}

func TestCourseReactionsDeliveredTwice(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	r := newReactions(t, env)
	corr := "flow-" + uuid.NewString()
	course := completeCourse(t, env, corr)
	pump(t, env, r, eventstore.Start)
	checkCourseFlow(t, env, r, course, corr)
	n := countTypes(t, env)
	if n[distribution.TypeCreated] != 1 || n[cf.TypeDeployedStaging] != 1 || n[distribution.TypeUpdated] != 1 {
		t.Fatalf("event counts %v: want one distribution, one deployment, one update", n)
	}
	// Delivering the whole log yet again changes nothing.
	redeliverChangesNothing(t, env, r, dt.Head(t, env.Store))
}

// Two subscribers deliver every event at the same time, as two consumers
// that both think they own the reactions would.
func TestCourseReactionsFromTwoConcurrentSubscriptions(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	r := newReactions(t, env)
	corr := "flow-" + uuid.NewString()
	course := completeCourse(t, env, corr)

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	var mu sync.Mutex
	handled := make([]eventstore.Position, 2) // where each subscriber is
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := reactions.RunOptions{Handled: func(p eventstore.Position) {
				mu.Lock()
				handled[i] = p
				mu.Unlock()
			}}
			if err := r.Run(runCtx, env.Store, opts); err != nil && !errors.Is(err, context.Canceled) {
				errs <- err
			}
		}()
	}
	distID := distribution.IDForCourse(course, distribution.ChannelWeb)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := env.Distributions.Load(ctx, distID)
		if err == nil && d.State.StagingURL != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reactions did not finish")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The slower subscriber delivers every event too before they stop:
	// both have handled the last event of the types they follow, and the
	// log did not grow meanwhile (a reaction appends before its event
	// counts as handled).
	last := func() eventstore.Position {
		t.Helper()
		page, err := env.Store.ReadAll(ctx, eventstore.ReadAllOptions{Limit: 10_000, Types: r.Types()})
		if err != nil {
			t.Fatal(err)
		}
		return page.Events[len(page.Events)-1].Position
	}
	both := func() bool {
		want := last()
		mu.Lock()
		done := handled[0].Compare(want) >= 0 && handled[1].Compare(want) >= 0
		mu.Unlock()
		return done && last() == want
	}
	for deadline := time.Now().Add(30 * time.Second); !both(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			mu.Lock()
			a, b := handled[0], handled[1]
			mu.Unlock()
			t.Fatalf("the subscribers handled up to %v and %v, want both at %v", a, b, last())
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkCourseFlow(t, env, r, course, corr)
	n := countTypes(t, env)
	if n[distribution.TypeCreated] != 1 || n[cf.TypeDeployedStaging] != 1 || n[distribution.TypeUpdated] != 1 {
		t.Fatalf("event counts %v: want one of each reaction's events", n)
	}
}

func TestMissionReactionsDeliveredTwice(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	r := newReactions(t, env)
	mission, ir := uuid.NewString(), "ir-"+uuid.NewString()
	steps := []governance.Step{{ID: "a", Action: "http.get", Tier: 0}, {ID: "b", Action: "payments.send", Tier: 2}}
	if _, err := env.Missions.Handle(ctx, dt.Meta(), missions.Create{MissionID: mission, IRID: ir, Title: "Pay", Steps: steps}); err != nil {
		t.Fatal(err)
	}
	pos := pump(t, env, r, eventstore.Start)
	m, _ := env.Missions.Load(ctx, mission)
	if m.State.Status != missions.StatusAwaitingApproval || m.State.MaxTier != 2 {
		t.Fatalf("mission after validation = %+v", m.State)
	}
	approval := uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: mission}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: approval, Token: token, ConsumedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	pump(t, env, r, pos)
	if _, err := env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: mission}); err != nil {
		t.Fatalf("start after the approval reaction: %v", err)
	}
	n := countTypes(t, env)
	if n[governance.TypeValidatedEscalate] != 1 || n[missions.TypeValidated] != 1 || n[missions.TypeApprovalGranted] != 1 {
		t.Fatalf("event counts %v", n)
	}

	// A rejected IR ends its mission.
	rej := uuid.NewString()
	if _, err := env.Missions.Handle(ctx, dt.Meta(), missions.Create{MissionID: rej, IRID: "ir-" + rej, Title: "Bad", Steps: []governance.Step{{ID: "x", Action: "tenant.delete", Tier: 3}}}); err != nil {
		t.Fatal(err)
	}
	pump(t, env, r, eventstore.Start)
	m, _ = env.Missions.Load(ctx, rej)
	if m.State.Status != missions.StatusRejected || m.State.EndReason != "no-tenant-deletion" {
		t.Fatalf("rejected mission = %+v", m.State)
	}
}

// A reaction refused by an invariant reports a permanent error (there is
// no point retrying it), and writes nothing.
func TestReactionRefusalIsReported(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	r := newReactions(t, env)
	// A distribution for a course the factory never completed.
	course := uuid.NewString()
	if _, err := env.Courses.Handle(ctx, dt.Meta(), cf.RequestGeneration{CourseID: course, Topic: "x"}); err != nil {
		t.Fatal(err)
	}
	res, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.Create{DistributionID: uuid.NewString(), CourseID: course, Channel: "email", Title: "x"})
	if err != nil {
		t.Fatal(err)
	}
	before := dt.Head(t, env.Store)
	err = r.Handle(ctx, res.Events[0])
	if !errors.Is(err, cf.ErrDeployNotCompleted) || !errors.Is(err, aggregates.ErrRefused) {
		t.Fatalf("Handle = %v, want the deploy-after-completion refusal", err)
	}
	if dt.Head(t, env.Store) != before {
		t.Fatal("a refused reaction wrote events")
	}
}

func TestNewRefusesARelativeStagingURL(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	if _, err := reactions.New(env.Services, reactions.Config{StagingBaseURL: "/staging"}); err == nil {
		t.Fatal("New accepted a relative staging URL")
	}
}

func TestCourseReactionsInPostgres(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	r := newReactions(t, env)
	corr := "flow-" + uuid.NewString()
	course := completeCourse(t, env, corr)
	pump(t, env, r, eventstore.Start)
	checkCourseFlow(t, env, r, course, corr)
}

// A deployment that names a distribution of another course (DeployStaging
// cannot see the distribution) does not write its staging URL onto that
// course's distribution: the reaction is refused, typed, and writes
// nothing.
func TestStagingURLOnlyOnTheCoursesOwnDistribution(t *testing.T) {
	t.Parallel()
	env := dt.Postgres(t, domain.Options{}, false)
	r := newReactions(t, env)
	a := completeCourse(t, env, "flow-a")
	pos := pump(t, env, r, eventstore.Start)
	b := completeCourse(t, env, "flow-b")
	pump(t, env, r, pos)
	distA := distribution.IDForCourse(a, distribution.ChannelWeb)
	res, err := env.Courses.Handle(ctx, dt.Meta(), cf.DeployStaging{CourseID: b, DistributionID: distA, StagingURL: "https://staging.example.com/courses/" + b + "/wrong"})
	if err != nil {
		t.Fatal(err)
	}
	before := dt.Head(t, env.Store)
	err = r.Handle(ctx, res.Events[0])
	dt.Refused(t, env.Store, before, err, distribution.ErrOtherCourse)
	d, err := env.Distributions.Load(ctx, distA)
	if err != nil {
		t.Fatal(err)
	}
	if want := r.StagingURL(a, distA); d.State.StagingURL != want {
		t.Fatalf("course %s's distribution has staging URL %s, want %s", a, d.State.StagingURL, want)
	}
}

// A channel the distribution schema does not know is a configuration
// error at start-up, not a failure of every completed course's reaction.
func TestNewRefusesAnUnknownChannel(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	if _, err := reactions.New(env.Services, reactions.Config{StagingBaseURL: "https://staging.example.com", Channel: "fax"}); err == nil {
		t.Fatal("New accepted the channel fax")
	}
	for _, ch := range []string{"", distribution.ChannelWeb, distribution.ChannelMarketplace, distribution.ChannelEmail, distribution.ChannelSocial, distribution.ChannelPartner} {
		if _, err := reactions.New(env.Services, reactions.Config{StagingBaseURL: "https://staging.example.com", Channel: ch}); err != nil {
			t.Fatalf("channel %q: %v", ch, err)
		}
	}
}

// A refused reaction is permanent: Run reports it (RunOptions.Refused),
// counts the event as handled and goes on with the next events, instead of
// returning and refusing the same event again on every restart from the
// checkpoint (which held back every later course's reactions for good).
func TestRunGoesOnAfterARefusal(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	r := newReactions(t, env)
	// A distribution for a course the factory never completed: its deploy
	// reaction is refused.
	stuck := uuid.NewString()
	if _, err := env.Courses.Handle(ctx, dt.Meta(), cf.RequestGeneration{CourseID: stuck, Topic: "x"}); err != nil {
		t.Fatal(err)
	}
	res, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.Create{DistributionID: uuid.NewString(), CourseID: stuck, Channel: "email", Title: "x"})
	if err != nil {
		t.Fatal(err)
	}
	refusedID := res.Events[0].ID
	// A course completed after it.
	course := completeCourse(t, env, "flow-after")

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var refused []eventstore.Event
	var handled []eventstore.Position
	done := make(chan error, 1)
	go func() {
		done <- r.Run(runCtx, env.Store, reactions.RunOptions{
			Refused: func(e eventstore.Event, err error) {
				mu.Lock()
				defer mu.Unlock()
				if !errors.Is(err, cf.ErrDeployNotCompleted) {
					t.Errorf("Refused got %v, want the deploy-after-completion refusal", err)
				}
				refused = append(refused, e)
			},
			Handled: func(p eventstore.Position) {
				mu.Lock()
				defer mu.Unlock()
				handled = append(handled, p)
			},
		})
	}()
	distID := distribution.IDForCourse(course, distribution.ChannelWeb)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := env.Distributions.Load(ctx, distID)
		if err == nil && d.State.StagingURL != "" {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned %v before the later course's reactions ran", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the later course's reactions did not run")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(refused) != 1 || refused[0].ID != refusedID {
		t.Fatalf("Refused saw %d events, want the one distribution.created %s", len(refused), refusedID)
	}
	if !slices.Contains(handled, refused[0].Position) {
		t.Fatal("the refused event's position was not reported as handled, so a checkpoint would stay before it")
	}
}

// Refusal tells a refusal for good from a failure worth retrying, also
// when Handle joins the errors of several reactions.
func TestRefusalClassifiesErrors(t *testing.T) {
	t.Parallel()
	refused := aggregates.Refuse(cf.ErrDeployNotCompleted, "no")
	transient := errors.New("connection reset")
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{refused, true},
		{&aggregates.NotFoundError{Aggregate: "course", ID: "x"}, true},
		{&eventstore.ValidationError{}, true},
		{transient, false},
		{context.Canceled, false},
		{&eventstore.ConcurrencyError{}, false},
		{errors.Join(refused, refused), true},
		{errors.Join(refused, transient), false},
		{&aggregates.CommandReusedError{Aggregate: "distribution", ID: "x"}, true},
		{&reactions.DecodeError{Type: cf.TypeGenerationCompleted, Err: &aggregates.UnknownEventError{Type: cf.TypeGenerationCompleted}}, true},
	} {
		if got := reactions.Refusal(c.err); got != c.want {
			t.Errorf("Refusal(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	// An event at a schema version the reactions cannot read: every
	// delivery fails the same way.
	env := dt.Memory(t, domain.Options{})
	r := newReactions(t, env)
	e := eventstore.Event{ID: uuid.New(), Type: cf.TypeGenerationCompleted, Payload: []byte(`{}`), Meta: eventstore.Meta{SchemaVersion: 9}}
	err := r.Handle(ctx, e)
	var de *reactions.DecodeError
	if !errors.As(err, &de) || !reactions.Refusal(err) {
		t.Errorf("Handle of an unreadable event = %v, want a *DecodeError that is a Refusal", err)
	}
}

// A completion whose reaction's command id is already taken by other
// events (here: a distribution an older release created under
// IDForCourse(course, "email") when the reactions were configured with
// the email channel) is refused for good: Run logs it, reports it to
// RunOptions.Refused, and goes on with the courses completed after it.
// Before, ErrCommandReused was not a Refusal: Run returned it, and every
// restart from the checkpoint met it again.
func TestRunGoesOnAfterAReusedCommandID(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			var logs syncbuf.Buffer
			r, err := reactions.New(env.Services, reactions.Config{StagingBaseURL: "https://staging.example.com",
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			old := completeCourse(t, env, "flow-old")
			completed := lastOfType(t, env, env.Courses.Repository().Stream(old), cf.TypeGenerationCompleted)
			if _, err := env.Distributions.Handle(ctx, aggregates.FromEvent(completed, reactions.CreateDistribution), distribution.Create{
				DistributionID: distribution.IDForCourse(old, distribution.ChannelEmail), CourseID: old, Channel: distribution.ChannelEmail, Title: "Event sourcing",
			}); err != nil {
				t.Fatal(err)
			}
			course := completeCourse(t, env, "flow-after")

			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			var mu sync.Mutex
			var refused []eventstore.Event
			done := make(chan error, 1)
			go func() {
				done <- r.Run(runCtx, env.Store, reactions.RunOptions{
					Refused: func(e eventstore.Event, err error) {
						mu.Lock()
						defer mu.Unlock()
						if !errors.Is(err, aggregates.ErrCommandReused) {
							t.Errorf("Refused got %v, want ErrCommandReused", err)
						}
						refused = append(refused, e)
					},
				})
			}()
			deadline := time.Now().Add(10 * time.Second)
			for {
				d, err := env.Distributions.Load(ctx, reactions.DistributionID(course))
				if err == nil && d.State.StagingURL != "" {
					break
				}
				select {
				case err := <-done:
					t.Fatalf("Run returned %v before the later course's reactions ran", err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatal("the later course's reactions did not run")
				}
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(refused) != 1 || refused[0].ID != completed.ID {
				t.Fatalf("Refused saw %d events, want the old course's completion %s", len(refused), completed.ID)
			}
			if !strings.Contains(logs.String(), "event refused") || !strings.Contains(logs.String(), completed.ID.String()) {
				t.Fatalf("no log line names the refused event; logs:\n%s", logs.String())
			}
			if _, err := env.Distributions.Load(ctx, reactions.DistributionID(old)); !errors.Is(err, aggregates.ErrNotFound) {
				t.Fatalf("the old course got a second distribution (%v)", err)
			}
		})
	}
}

// handleEach delivers e to the reactions twice, failing the test on an
// error.
func handleEach(t *testing.T, r *reactions.Reactions, evs ...eventstore.Event) {
	t.Helper()
	for _, e := range evs {
		for range 2 {
			if err := r.Handle(ctx, e); err != nil {
				t.Fatalf("handle %s %s: %v", e.Type, e.ID, err)
			}
		}
	}
}

// lastOfType returns the last event of type typ in stream.
func lastOfType(t *testing.T, env *dt.Env, stream, typ string) eventstore.Event {
	t.Helper()
	evs, err := env.Store.ReadStream(ctx, stream, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			return evs[i]
		}
	}
	t.Fatalf("no %s in %s", typ, stream)
	return eventstore.Event{}
}

// Two deployments of a course for one distribution, their
// course.deployed.staging events handled newest first (an older event
// parked and retried from the dead letters after the newer one went
// through, or two consumers): the distribution keeps the newest staging
// URL, and the stale event writes nothing, delivered once or twice.
func TestStaleDeploymentDoesNotOverwriteTheNewerStagingURL(t *testing.T) {
	t.Parallel()
	for _, store := range dt.Backends {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, store, domain.Options{})
			r := newReactions(t, env)
			course := completeCourse(t, env, "flow-"+uuid.NewString())
			distID := distribution.IDForCourse(course, distribution.ChannelWeb)
			handleEach(t, r, lastOfType(t, env, "course-"+course, cf.TypeGenerationCompleted))
			handleEach(t, r, lastOfType(t, env, "distribution-"+distID, distribution.TypeCreated))
			older := lastOfType(t, env, "course-"+course, cf.TypeDeployedStaging)
			// The course is deployed again, to a new staging host.
			newer := "https://staging-2.example.com/courses/" + course
			res, err := env.Courses.Handle(ctx, dt.Meta(), cf.DeployStaging{CourseID: course, DistributionID: distID, StagingURL: newer})
			if err != nil {
				t.Fatal(err)
			}
			handleEach(t, r, res.Events[0])
			before := dt.Head(t, env.Store)
			handleEach(t, r, older)
			if after := dt.Head(t, env.Store); after != before {
				t.Fatalf("the stale deployment wrote events (log %s → %s)", before, after)
			}
			d, err := env.Distributions.Load(ctx, distID)
			if err != nil {
				t.Fatal(err)
			}
			if d.State.StagingURL != newer {
				t.Fatalf("staging URL %s, want the newer deployment's %s", d.State.StagingURL, newer)
			}
			// The whole log again, in order, changes nothing.
			redeliverChangesNothing(t, env, r, before)
			if d, _ := env.Distributions.Load(ctx, distID); d.State.StagingURL != newer {
				t.Fatalf("after a redelivery the staging URL is %s, want %s", d.State.StagingURL, newer)
			}
		})
	}
}

// A distribution deleted before its course's deployment is recorded (the
// user deleted it while the deploy reaction ran): there is no staging URL
// to keep on it, so the reaction writes nothing and fails nothing, instead
// of parking a dead letter for a benign race.
func TestDeploymentOfADeletedDistributionIsSkipped(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	r := newReactions(t, env)
	course := completeCourse(t, env, "flow-"+uuid.NewString())
	distID := distribution.IDForCourse(course, distribution.ChannelWeb)
	handleEach(t, r, lastOfType(t, env, "course-"+course, cf.TypeGenerationCompleted))
	handleEach(t, r, lastOfType(t, env, "distribution-"+distID, distribution.TypeCreated))
	if _, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.Delete{DistributionID: distID, Reason: "changed my mind"}); err != nil {
		t.Fatal(err)
	}
	before := dt.Head(t, env.Store)
	handleEach(t, r, lastOfType(t, env, "course-"+course, cf.TypeDeployedStaging))
	if after := dt.Head(t, env.Store); after != before {
		t.Fatalf("the reaction wrote to a deleted distribution (log %s → %s)", before, after)
	}
	// The whole log again changes nothing and fails nothing.
	redeliverChangesNothing(t, env, r, before)
}

// One tenant's events and commands never act on another tenant's course
// or distribution. Tenant t2 can append raw events (the API checks who
// owns a stream, not what its payload names) and create distributions of
// its own naming any course id: none of that deploys t1's course, creates
// t1's course distribution for t2, or reaches t1's aggregates. Each
// refusal is typed and writes nothing.
func TestAnotherTenantCannotDeployOrClaimACourse(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	r := newReactions(t, env)
	t2 := aggregates.CommandMeta{TenantID: "t2"}
	course := completeCourse(t, env, "flow-"+uuid.NewString()) // tenant t1
	distID := distribution.IDForCourse(course, distribution.ChannelWeb)

	// A completion of t1's course, appended by t2 to a stream of its own,
	// would create t1's course distribution under t2 (and t1's real
	// completion would then find it taken).
	raw := func(stream, typ, payload string) eventstore.Event {
		t.Helper()
		res, err := env.Store.Append(ctx, stream, eventstore.NoStream, eventstore.Event{Type: typ, Source: "t2-client",
			Payload: []byte(payload), Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "t2"}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Events[0]
	}
	fake := raw("course-"+uuid.NewString(), cf.TypeGenerationCompleted,
		`{"course_id":"`+course+`","title":"Mine now","lesson_count":1,"attempt":1}`)
	before := dt.Head(t, env.Store)
	dt.Refused(t, env.Store, before, r.Handle(ctx, fake), reactions.ErrForeignEvent)

	// t1's own completion creates the distribution, for t1.
	handleEach(t, r, lastOfType(t, env, "course-"+course, cf.TypeGenerationCompleted))
	d, err := env.Distributions.Load(ctx, distID)
	if err != nil || d.State.TenantID != "t1" {
		t.Fatalf("t1's course distribution: %+v, %v", d, err)
	}

	// A distribution t2 creates for t1's course does not deploy t1's course.
	res, err := env.Distributions.Handle(ctx, t2, distribution.Create{DistributionID: uuid.NewString(), CourseID: course, Channel: distribution.ChannelEmail, Title: "Mine"})
	if err != nil {
		t.Fatal(err)
	}
	before = dt.Head(t, env.Store)
	dt.Refused(t, env.Store, before, r.Handle(ctx, res.Events[0]), cf.ErrCourseTenant)

	// A deployment of t1's course, appended by t2 to its own stream, does
	// not set the staging URL of t1's distribution.
	fakeDeploy := raw("course-"+uuid.NewString(), cf.TypeDeployedStaging,
		`{"course_id":"`+course+`","distribution_id":"`+distID+`","staging_url":"https://evil.example.com/"}`)
	before = dt.Head(t, env.Store)
	dt.Refused(t, env.Store, before, r.Handle(ctx, fakeDeploy), reactions.ErrForeignEvent)

	// t2's commands on t1's course and distribution are refused, and learn
	// nothing of them.
	before = dt.Head(t, env.Store)
	cres, err := env.Courses.Handle(ctx, t2, cf.DeployStaging{CourseID: course, DistributionID: distID, StagingURL: "https://evil.example.com/"})
	dt.Refused(t, env.Store, before, err, cf.ErrCourseTenant)
	if cres.Aggregate != nil {
		t.Fatal("the refusal's result carries t1's course")
	}
	dres, err := env.Distributions.Handle(ctx, t2, distribution.Publish{DistributionID: distID})
	dt.Refused(t, env.Store, before, err, distribution.ErrTenant)
	if dres.Aggregate != nil {
		t.Fatal("the refusal's result carries t1's distribution")
	}
	_, err = env.Distributions.Handle(ctx, t2, distribution.Create{DistributionID: distID, CourseID: course, Channel: distribution.ChannelWeb, Title: "Mine"})
	dt.Refused(t, env.Store, before, err, distribution.ErrTenant)

	// t1's own flow still completes.
	handleEach(t, r, lastOfType(t, env, "distribution-"+distID, distribution.TypeCreated))
	handleEach(t, r, lastOfType(t, env, "course-"+course, cf.TypeDeployedStaging))
	if d, _ := env.Distributions.Load(ctx, distID); d.State.StagingURL != r.StagingURL(course, distID) {
		t.Fatalf("t1's distribution staging URL %q", d.State.StagingURL)
	}
	c, _ := env.Courses.Load(ctx, course)
	if c.State.Workflow != cf.Deployed || len(c.State.Deployments) != 1 || c.State.TenantID != "t1" {
		t.Fatalf("t1's course = %+v, want deployed once, for t1", c.State)
	}
}

// The course-completed reaction names the distribution after the event
// alone: a redelivery after Config.Channel and Config.StagingBaseURL
// changed (on purpose, or two deployments configured differently) finds
// the distribution it created and the deployment it made, and writes
// nothing, with no error, instead of creating a second distribution on
// the new channel (before: refused with ErrCommandReused, which stopped
// Run). A course completed after the change gets its distribution on the
// new channel, staged at the new address.
func TestRedeliveryAfterAConfigChangeCreatesNoSecondDistribution(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			web := newReactions(t, env)
			course := completeCourse(t, env, "flow-"+uuid.NewString())
			pump(t, env, web, eventstore.Start)
			before := dt.Head(t, env.Store)
			email, err := reactions.New(env.Services, reactions.Config{StagingBaseURL: "https://stage2.example.com", Channel: distribution.ChannelEmail})
			if err != nil {
				t.Fatal(err)
			}
			redeliverChangesNothing(t, env, email, before)
			if n := countTypes(t, env)[distribution.TypeCreated]; n != 1 {
				t.Fatalf("%d distributions after the redelivery on another channel, want 1", n)
			}
			d, err := env.Distributions.Load(ctx, reactions.DistributionID(course))
			if err != nil {
				t.Fatal(err)
			}
			if d.State.Channel != distribution.ChannelWeb {
				t.Fatalf("the course's distribution is on %q, want web: a redelivery does not move it", d.State.Channel)
			}

			later := completeCourse(t, env, "flow-"+uuid.NewString())
			pump(t, env, email, before)
			d, err = env.Distributions.Load(ctx, reactions.DistributionID(later))
			if err != nil {
				t.Fatal(err)
			}
			if d.State.Channel != distribution.ChannelEmail || d.State.CourseID != later {
				t.Fatalf("the later course's distribution = %+v, want course %s on email", d.State, later)
			}
			if n := countTypes(t, env)[distribution.TypeCreated]; n != 2 {
				t.Fatalf("%d distributions, want one per course", n)
			}
		})
	}
}

// An approver may consume a mission's approval before the reactions have
// brought governance's escalate verdict to the mission (the approval is
// created for the mission and its IR, which governance does not make
// wait for the verdict). The grant reaction then met a mission still
// created and was refused with mission-state, a refusal for good, so the
// event was parked; the verdict that followed left the mission awaiting
// an approval that had been consumed, single-use, and it never started.
func TestApprovalConsumedBeforeTheVerdictStartsTheMission(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	r := newReactions(t, env)
	mission, ir := uuid.NewString(), "ir-"+uuid.NewString()
	steps := []governance.Step{{ID: "a", Action: "http.get", Tier: 0}, {ID: "b", Action: "payments.send", Tier: 2}}
	if _, err := env.Missions.Handle(ctx, dt.Meta(), missions.Create{MissionID: mission, IRID: ir, Title: "Pay", Steps: steps}); err != nil {
		t.Fatal(err)
	}
	approval := uuid.NewString()
	token, _, err := env.Governance.CreateApproval(ctx, dt.Meta(), governance.CreateApproval{ApprovalID: approval, IRID: ir, MissionID: mission}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Governance.ConsumeApproval(ctx, dt.Meta(), governance.ConsumeApproval{ApprovalID: approval, Token: token, ConsumedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	// The log holds mission.created, the approval's creation and its
	// consumption; the verdict comes when the reactions handle the first.
	pump(t, env, r, eventstore.Start)
	m, err := env.Missions.Load(ctx, mission)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.State.Status, missions.StatusReady; got != want || m.State.ApprovalID != approval {
		t.Fatalf("mission = %s with approval %q, want %s with %s", got, m.State.ApprovalID, want, approval)
	}
	res, err := env.Missions.Handle(ctx, dt.Meta(), missions.Start{MissionID: mission})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if got, want := res.Aggregate.State.Status, missions.StatusRunning; got != want {
		t.Fatalf("mission = %s, want %s", got, want)
	}
	n := countTypes(t, env)
	if n[missions.TypeValidated] != 1 || n[missions.TypeApprovalGranted] != 1 {
		t.Fatalf("event counts %v", n)
	}
}

// A client may have governance validate a mission's IR, naming the
// mission, before it creates the mission. The verdict's reaction then met
// no mission (not found, parked for good), and the mission.created
// reaction's ValidateIR found the verdict recorded for the mission and
// wrote nothing: the mission stayed created, without its verdict, for
// ever. The mission.created reaction now records governance's verdict on
// the mission when governance has it for the mission already.
func TestVerdictRecordedBeforeTheMissionExistedReachesIt(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	r := newReactions(t, env)
	mission, ir := uuid.NewString(), "ir-"+uuid.NewString()
	steps := []governance.Step{{ID: "a", Action: "http.get", Tier: 0}, {ID: "b", Action: "db.write", Tier: 1}}
	verdict, err := env.Governance.ValidateIR(ctx, dt.Meta(), governance.ValidateIR{IR: governance.IR{ID: ir, Steps: steps}, MissionID: mission})
	if err != nil {
		t.Fatal(err)
	}
	// The verdict's reaction finds no mission yet.
	if err := r.Handle(ctx, verdict.Events[0]); !reactions.Refusal(err) || !errors.Is(err, aggregates.ErrNotFound) {
		t.Fatalf("verdict before the mission: %v, want a not-found refusal", err)
	}
	created, err := env.Missions.Handle(ctx, dt.Meta(), missions.Create{MissionID: mission, IRID: ir, Title: "Sync", Steps: steps})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := r.Handle(ctx, created.Events[0]); err != nil {
			t.Fatalf("mission.created: %v", err)
		}
	}
	m, err := env.Missions.Load(ctx, mission)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.State.Status, missions.StatusReady; got != want {
		t.Fatalf("mission = %s, want %s", got, want)
	}
	if n := countTypes(t, env); n[missions.TypeValidated] != 1 || n[governance.TypeValidatedPass] != 1 {
		t.Fatalf("event counts %v", n)
	}
	evs, err := env.Store.ReadStream(ctx, "mission-"+mission, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	v := evs[len(evs)-1]
	if v.Type != missions.TypeValidated || v.Meta.CausationID != created.Events[0].ID.String() || v.Meta.TenantID != "t1" {
		t.Fatalf("%s caused by %s for %q, want by mission.created %s for t1", v.Type, v.Meta.CausationID, v.Meta.TenantID, created.Events[0].ID)
	}
}
