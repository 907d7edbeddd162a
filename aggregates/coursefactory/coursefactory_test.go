package coursefactory_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	cf "github.com/brainhq/eventstream/aggregates/coursefactory"
	"github.com/brainhq/eventstream/aggregates/domain"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/eventstore"
)

var ctx = context.Background()

func do(t *testing.T, env *dt.Env, c aggregates.Command[cf.State]) aggregates.Result[cf.State] {
	t.Helper()
	res, err := env.Courses.Handle(ctx, dt.Meta(), c)
	if err != nil {
		t.Fatalf("%T: %v", c, err)
	}
	return res
}

// course drives a new course up to (and including) the given state.
func course(t *testing.T, env *dt.Env, upTo cf.WorkflowState) string {
	t.Helper()
	id := uuid.NewString()
	steps := []struct {
		state cf.WorkflowState
		cmds  []aggregates.Command[cf.State]
	}{
		{cf.Requested, []aggregates.Command[cf.State]{cf.RequestGeneration{CourseID: id, Topic: "Go concurrency", RequestedBy: "u1"}}},
		{cf.Outlining, []aggregates.Command[cf.State]{cf.StartOutlining{CourseID: id}}},
		{cf.Generating, []aggregates.Command[cf.State]{cf.CreateOutline{CourseID: id, Title: "Go concurrency", Lessons: []cf.LessonSlot{{1, "Goroutines"}, {2, "Channels"}}}}},
		{cf.Review, []aggregates.Command[cf.State]{
			cf.GenerateLesson{CourseID: id, Slot: 1, Title: "Goroutines", ContentURI: "s3://courses/1.md", WordCount: 1200},
			cf.GenerateLesson{CourseID: id, Slot: 2, Title: "Channels"},
			cf.CreateQuiz{CourseID: id, QuizID: uuid.NewString(), QuestionCount: 10},
			cf.CreateLandingPage{CourseID: id, Headline: "Learn Go concurrency", Slug: "go-concurrency"},
			cf.SubmitForReview{CourseID: id},
		}},
		{cf.Completed, []aggregates.Command[cf.State]{cf.Complete{CourseID: id}}},
		{cf.Deployed, []aggregates.Command[cf.State]{cf.DeployStaging{CourseID: id, DistributionID: uuid.NewString(), StagingURL: "https://staging.example.com/c/" + id}}},
	}
	for _, s := range steps {
		for _, c := range s.cmds {
			do(t, env, c)
		}
		if s.state == upTo {
			return id
		}
	}
	t.Fatalf("unknown state %s", upTo)
	return ""
}

func TestCourseHappyPathEmitsEveryEvent(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id := course(t, env, cf.Deployed)
	got := dt.Types(t, env.Store, "course-"+id)
	want := []string{
		cf.TypeGenerationRequested, cf.TypeWorkflowTransitioned,
		cf.TypeWorkflowTransitioned,
		cf.TypeOutlineCreated, cf.TypeWorkflowTransitioned,
		cf.TypeLessonGenerated, cf.TypeLessonGenerated, cf.TypeQuizCreated, cf.TypeLandingPageCreated, cf.TypeWorkflowTransitioned,
		cf.TypeGenerationCompleted, cf.TypeWorkflowTransitioned,
		cf.TypeDeployedStaging, cf.TypeWorkflowTransitioned,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}
	evs, _ := env.Store.ReadStream(ctx, "course-"+id, 1, 0)
	var path []string
	for _, e := range evs {
		if e.Type == cf.TypeWorkflowTransitioned {
			var tr cf.WorkflowTransitioned
			if err := json.Unmarshal(e.Payload, &tr); err != nil {
				t.Fatal(err)
			}
			path = append(path, string(tr.From)+"→"+string(tr.To))
		}
		if e.Source != cf.Source || e.Meta.TenantID != "t1" {
			t.Fatalf("event %s: source %q tenant %q", e.Type, e.Source, e.Meta.TenantID)
		}
	}
	wantPath := []string{"none→requested", "requested→outlining", "outlining→generating", "generating→review", "review→completed", "completed→deployed"}
	if !slices.Equal(path, wantPath) {
		t.Fatalf("workflow path %v, want %v", path, wantPath)
	}
	a, err := env.Courses.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	s := a.State
	if s.Workflow != cf.Deployed || s.Language != "en" || s.Attempt != 1 || len(s.Lessons) != 2 || !s.HasQuiz || !s.HasLanding || len(s.Deployments) != 1 {
		t.Fatalf("state = %+v", s)
	}
}

func TestCourseRefusals(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	missing := uuid.NewString()
	cases := []struct {
		name string
		from cf.WorkflowState // the state to build first ("" for none)
		cmd  func(id string) aggregates.Command[cf.State]
		want error
	}{
		{"request while active", cf.Generating, func(id string) aggregates.Command[cf.State] {
			return cf.RequestGeneration{CourseID: id, Topic: "again"}
		}, cf.ErrAlreadyRequested},
		{"request after completion", cf.Completed, func(id string) aggregates.Command[cf.State] {
			return cf.RequestGeneration{CourseID: id, Topic: "again"}
		}, cf.ErrAlreadyRequested},
		{"start outlining a missing course", "", func(string) aggregates.Command[cf.State] { return cf.StartOutlining{CourseID: missing} }, aggregates.ErrNotFound},
		{"start outlining twice", cf.Outlining, func(id string) aggregates.Command[cf.State] { return cf.StartOutlining{CourseID: id} }, cf.ErrWorkflowState},
		{"outline before outlining", cf.Requested, func(id string) aggregates.Command[cf.State] {
			return cf.CreateOutline{CourseID: id, Title: "x", Lessons: []cf.LessonSlot{{1, "a"}}}
		}, cf.ErrWorkflowState},
		{"outline declaring a slot twice", cf.Outlining, func(id string) aggregates.Command[cf.State] {
			return cf.CreateOutline{CourseID: id, Title: "x", Lessons: []cf.LessonSlot{{1, "a"}, {1, "b"}}}
		}, cf.ErrDuplicateSlot},
		{"outline without lessons breaks the schema", cf.Outlining, func(id string) aggregates.Command[cf.State] {
			return cf.CreateOutline{CourseID: id, Title: "x", Lessons: []cf.LessonSlot{}}
		}, eventstore.ErrValidation},
		{"lesson before the outline", cf.Outlining, func(id string) aggregates.Command[cf.State] {
			return cf.GenerateLesson{CourseID: id, Slot: 1, Title: "a"}
		}, cf.ErrOutlineRequired},
		{"lesson for an undeclared slot", cf.Generating, func(id string) aggregates.Command[cf.State] {
			return cf.GenerateLesson{CourseID: id, Slot: 3, Title: "c"}
		}, cf.ErrSlotNotDeclared},
		{"lesson twice", cf.Review, func(id string) aggregates.Command[cf.State] {
			return cf.GenerateLesson{CourseID: id, Slot: 1, Title: "a"}
		}, cf.ErrWorkflowState},
		{"quiz before generating", cf.Requested, func(id string) aggregates.Command[cf.State] {
			return cf.CreateQuiz{CourseID: id, QuizID: uuid.NewString(), QuestionCount: 3}
		}, cf.ErrWorkflowState},
		{"quiz twice", cf.Review, func(id string) aggregates.Command[cf.State] {
			return cf.CreateQuiz{CourseID: id, QuizID: uuid.NewString(), QuestionCount: 3}
		}, cf.ErrQuizTwice},
		{"landing page twice", cf.Review, func(id string) aggregates.Command[cf.State] {
			return cf.CreateLandingPage{CourseID: id, Headline: "h", Slug: "h"}
		}, cf.ErrLandingPageTwice},
		{"landing page slug breaks the schema", cf.Generating, func(id string) aggregates.Command[cf.State] {
			return cf.CreateLandingPage{CourseID: id, Headline: "h", Slug: "Not A Slug"}
		}, eventstore.ErrValidation},
		{"review with lessons missing", cf.Generating, func(id string) aggregates.Command[cf.State] { return cf.SubmitForReview{CourseID: id} }, cf.ErrLessonsMissing},
		{"complete before review", cf.Generating, func(id string) aggregates.Command[cf.State] { return cf.Complete{CourseID: id} }, cf.ErrWorkflowState},
		{"fail a completed course", cf.Completed, func(id string) aggregates.Command[cf.State] { return cf.Fail{CourseID: id, Reason: "late"} }, cf.ErrWorkflowState},
		{"fail a missing course", "", func(string) aggregates.Command[cf.State] { return cf.Fail{CourseID: missing, Reason: "x"} }, aggregates.ErrNotFound},
		{"deploy before completion", cf.Review, func(id string) aggregates.Command[cf.State] {
			return cf.DeployStaging{CourseID: id, DistributionID: uuid.NewString(), StagingURL: "https://s.example.com/x"}
		}, cf.ErrDeployNotCompleted},
		{"deploy with a bad URL breaks the schema", cf.Completed, func(id string) aggregates.Command[cf.State] {
			return cf.DeployStaging{CourseID: id, DistributionID: uuid.NewString(), StagingURL: "not a url"}
		}, eventstore.ErrValidation},
		{"request with a course id that is not a uuid", "", func(string) aggregates.Command[cf.State] {
			return cf.RequestGeneration{CourseID: "course-42", Topic: "x"}
		}, eventstore.ErrValidation},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := missing
			if c.from != "" {
				id = course(t, env, c.from)
			}
			before := dt.Head(t, env.Store)
			_, err := env.Courses.Handle(ctx, dt.Meta(), c.cmd(id))
			dt.Refused(t, env.Store, before, err, c.want)
		})
	}
}

func TestCompletionNeedsEveryPart(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id := course(t, env, cf.Generating)
	do(t, env, cf.GenerateLesson{CourseID: id, Slot: 1, Title: "a"})
	do(t, env, cf.GenerateLesson{CourseID: id, Slot: 2, Title: "b"})
	do(t, env, cf.SubmitForReview{CourseID: id})
	before := dt.Head(t, env.Store)
	_, err := env.Courses.Handle(ctx, dt.Meta(), cf.Complete{CourseID: id})
	dt.Refused(t, env.Store, before, err, cf.ErrIncomplete)
	do(t, env, cf.CreateQuiz{CourseID: id, QuizID: uuid.NewString(), QuestionCount: 1})
	before = dt.Head(t, env.Store)
	_, err = env.Courses.Handle(ctx, dt.Meta(), cf.Complete{CourseID: id})
	dt.Refused(t, env.Store, before, err, cf.ErrIncomplete)
	do(t, env, cf.CreateLandingPage{CourseID: id, Headline: "h", Slug: "h"})
	res := do(t, env, cf.Complete{CourseID: id})
	if res.Aggregate.State.Workflow != cf.Completed {
		t.Fatalf("workflow = %s, want completed", res.Aggregate.State.Workflow)
	}
}

func TestNothingAfterFailureButANewRequest(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id := course(t, env, cf.Generating)
	do(t, env, cf.GenerateLesson{CourseID: id, Slot: 1, Title: "a"})
	res := do(t, env, cf.Fail{CourseID: id, Reason: "model timed out"})
	if got := res.Events[0]; got.Type != cf.TypeGenerationFailed {
		t.Fatalf("first event %s, want %s", got.Type, cf.TypeGenerationFailed)
	}
	for _, c := range []aggregates.Command[cf.State]{
		cf.GenerateLesson{CourseID: id, Slot: 2, Title: "b"},
		cf.StartOutlining{CourseID: id},
		cf.CreateQuiz{CourseID: id, QuizID: uuid.NewString(), QuestionCount: 1},
		cf.Complete{CourseID: id},
		cf.Fail{CourseID: id, Reason: "again"},
		cf.DeployStaging{CourseID: id, DistributionID: uuid.NewString(), StagingURL: "https://s.example.com"},
	} {
		before := dt.Head(t, env.Store)
		_, err := env.Courses.Handle(ctx, dt.Meta(), c)
		dt.Refused(t, env.Store, before, err, cf.ErrAfterFailure)
	}
	res = do(t, env, cf.RequestGeneration{CourseID: id, Topic: "Go concurrency, take two", Language: "de"})
	s := res.Aggregate.State
	if s.Workflow != cf.Requested || s.Attempt != 2 || s.HasOutline || len(s.Lessons) != 0 || s.Language != "de" {
		t.Fatalf("state after a new request = %+v, want a fresh attempt 2", s)
	}
	var tr cf.WorkflowTransitioned
	_ = json.Unmarshal(res.Events[1].Payload, &tr)
	if tr.From != cf.Failed || tr.To != cf.Requested {
		t.Fatalf("transition %s→%s, want failed→requested", tr.From, tr.To)
	}
}

func TestDeployStagingTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id := course(t, env, cf.Completed)
	dist := uuid.NewString()
	c := cf.DeployStaging{CourseID: id, DistributionID: dist, StagingURL: "https://staging.example.com/" + id}
	if res := do(t, env, c); len(res.Events) != 2 {
		t.Fatalf("first deploy wrote %d events, want 2", len(res.Events))
	}
	before := dt.Head(t, env.Store)
	if res := do(t, env, c); len(res.Events) != 0 || dt.Head(t, env.Store) != before {
		t.Fatalf("second deploy wrote %d events, want none", len(res.Events))
	}
	// Another distribution is staged too, without another transition.
	res := do(t, env, cf.DeployStaging{CourseID: id, DistributionID: uuid.NewString(), StagingURL: "https://staging.example.com/b"})
	if len(res.Events) != 1 || res.Events[0].Type != cf.TypeDeployedStaging {
		t.Fatalf("deploy for a second distribution wrote %v", res.Events)
	}
}

// A course.generation.requested stored at v1 (before language existed) is
// read as v2 with language "en"; the stored event stays v1.
func TestGenerationRequestedV1IsReadAsV2(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id := uuid.NewString()
	_, err := env.Store.Append(ctx, "course-"+id, eventstore.NoStream,
		eventstore.Event{Type: cf.TypeGenerationRequested, Source: "legacy", Payload: json.RawMessage(`{"course_id":"` + id + `","topic":"Legacy","attempt":1}`), Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "t1"}},
		eventstore.Event{Type: cf.TypeWorkflowTransitioned, Source: "legacy", Payload: json.RawMessage(`{"course_id":"` + id + `","from":"none","to":"requested"}`), Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "t1"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	a, err := env.Courses.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if a.State.Language != "en" || a.State.Topic != "Legacy" || a.State.Workflow != cf.Requested {
		t.Fatalf("state = %+v, want language en from the upcaster", a.State)
	}
	evs, _ := env.Store.ReadStream(ctx, "course-"+id, 1, 1)
	up, err := env.Registry.Upcast(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	var v2 map[string]any
	_ = json.Unmarshal(up.Payload, &v2)
	if up.Meta.SchemaVersion != 2 || v2["language"] != "en" {
		t.Fatalf("upcast = v%d %s, want v2 with language en", up.Meta.SchemaVersion, up.Payload)
	}
	if evs[0].Meta.SchemaVersion != 1 {
		t.Fatalf("stored event is v%d, want v1 untouched", evs[0].Meta.SchemaVersion)
	}
	// New requests are written at v2.
	id2 := course(t, env, cf.Requested)
	evs, _ = env.Store.ReadStream(ctx, "course-"+id2, 1, 1)
	if evs[0].Meta.SchemaVersion != 2 {
		t.Fatalf("new request written at v%d, want v2", evs[0].Meta.SchemaVersion)
	}
}

func TestUpcasterV1ToV2(t *testing.T) {
	t.Parallel()
	got, err := cf.UpcastGenerationRequestedV1(map[string]any{"course_id": "x", "topic": "t", "attempt": 1})
	if err != nil || got["language"] != cf.DefaultLanguage {
		t.Fatalf("upcast = %v, %v", got, err)
	}
	if _, err := cf.UpcastGenerationRequestedV1(map[string]any{"language": "fr"}); err == nil {
		t.Fatal("upcaster accepted a payload that already has a language")
	}
}

// A course loaded from a snapshot equals the same course replayed.
func TestCourseSnapshotRoundTrip(t *testing.T) {
	t.Parallel()
	snaps := &aggregates.MemorySnapshots{}
	env := dt.Memory(t, domain.Options{Snapshots: snaps, SnapshotEvery: 4})
	id := course(t, env, cf.Deployed)
	if _, ok, _ := snaps.Load(ctx, "course-"+id, cf.SnapshotSchemaVersion); !ok {
		t.Fatal("no snapshot taken")
	}
	fromSnap, err := env.Courses.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := env.Courses.Repository().LoadFromEvents(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(fromSnap.State)
	b, _ := json.Marshal(replayed.State)
	if string(a) != string(b) || fromSnap.Version != replayed.Version {
		t.Fatalf("snapshot load:\n%s\nreplay:\n%s", a, b)
	}
}

func TestLessonOnlyOncePerSlot(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id := course(t, env, cf.Generating)
	do(t, env, cf.GenerateLesson{CourseID: id, Slot: 2, Title: "b"})
	before := dt.Head(t, env.Store)
	_, err := env.Courses.Handle(ctx, dt.Meta(), cf.GenerateLesson{CourseID: id, Slot: 2, Title: "b again"})
	dt.Refused(t, env.Store, before, err, cf.ErrLessonTwice)
}

// A topic, title or headline that shows nothing (only white space, or
// invisible characters) passes the schemas' minLength but names nothing:
// it is refused, typed, and nothing is written. Visible text around
// spaces is fine.
func TestBlankTextIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	for _, c := range []struct {
		name string
		from cf.WorkflowState
		cmd  func(id string) aggregates.Command[cf.State]
	}{
		{"topic of spaces", "", func(id string) aggregates.Command[cf.State] { return cf.RequestGeneration{CourseID: id, Topic: "   "} }},
		{"topic of a zero-width space", "", func(id string) aggregates.Command[cf.State] {
			return cf.RequestGeneration{CourseID: id, Topic: "\u200b"}
		}},
		{"outline title of white space", cf.Outlining, func(id string) aggregates.Command[cf.State] {
			return cf.CreateOutline{CourseID: id, Title: " \t ", Lessons: []cf.LessonSlot{{1, "a"}}}
		}},
		{"lesson slot title of spaces", cf.Outlining, func(id string) aggregates.Command[cf.State] {
			return cf.CreateOutline{CourseID: id, Title: "Go", Lessons: []cf.LessonSlot{{1, "a"}, {2, "  "}}}
		}},
		{"lesson title of a newline", cf.Generating, func(id string) aggregates.Command[cf.State] {
			return cf.GenerateLesson{CourseID: id, Slot: 1, Title: "\n"}
		}},
		{"headline of no-break spaces", cf.Generating, func(id string) aggregates.Command[cf.State] {
			return cf.CreateLandingPage{CourseID: id, Headline: "\u00a0\u00a0", Slug: "go"}
		}},
		{"failure reason of spaces", cf.Generating, func(id string) aggregates.Command[cf.State] {
			return cf.Fail{CourseID: id, Reason: "  "}
		}},
		{"failure without a reason", cf.Outlining, func(id string) aggregates.Command[cf.State] {
			return cf.Fail{CourseID: id}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := uuid.NewString()
			if c.from != "" {
				id = course(t, env, c.from)
			}
			before := dt.Head(t, env.Store)
			_, err := env.Courses.Handle(ctx, dt.Meta(), c.cmd(id))
			dt.Refused(t, env.Store, before, err, cf.ErrBlank)
		})
	}
	do(t, env, cf.RequestGeneration{CourseID: uuid.NewString(), Topic: "  Go  "})
}

// A command id is no secret a tenant keeps: another tenant sending a
// command with the id of one that landed on a course (an idempotency key
// derived from something both know, or a reused one) is refused with
// course-tenant, as any other tenant's command is, and learns nothing of
// the course. Before, the landed-command check answered it with
// ErrCommandReused, naming the version where the command landed, and the
// course as loaded (its tenant, topic, workflow).
func TestAnotherTenantReusingALandedCommandIDLearnsNothing(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			id := uuid.NewString()
			first, second := dt.Meta(), dt.Meta()
			first.ID, second.ID = uuid.New(), uuid.New()
			request := cf.RequestGeneration{CourseID: id, Topic: "Secret topic", RequestedBy: "u1"}
			if _, err := env.Courses.Handle(ctx, first, request); err != nil {
				t.Fatal(err)
			}
			if _, err := env.Courses.Handle(ctx, second, cf.StartOutlining{CourseID: id}); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				id  uuid.UUID
				cmd aggregates.Command[cf.State]
			}{
				{first.ID, request},
				{first.ID, cf.StartOutlining{CourseID: id}},
				{second.ID, cf.StartOutlining{CourseID: id}},
				{second.ID, cf.Fail{CourseID: id, Reason: "probe"}},
			} {
				before := dt.Head(t, env.Store)
				res, err := env.Courses.Handle(ctx, aggregates.CommandMeta{TenantID: "t2", ID: c.id}, c.cmd)
				dt.Refused(t, env.Store, before, err, cf.ErrCourseTenant)
				if errors.Is(err, aggregates.ErrCommandReused) || res.Aggregate != nil || len(res.Events) != 0 ||
					strings.Contains(err.Error(), "Secret") || strings.Contains(err.Error(), " at v") {
					t.Fatalf("%T: the refusal tells another tenant about the course: %v, %+v", c.cmd, err, res.Aggregate)
				}
			}
			// The course's own tenant retrying its StartOutlining still
			// gets its result.
			res, err := env.Courses.Handle(ctx, second, cf.StartOutlining{CourseID: id})
			if err != nil || len(res.Events) == 0 || res.Events[0].Version != 3 {
				t.Fatalf("the retried StartOutlining: %v, %v", err, res.Events)
			}
		})
	}
}

// Text that is not valid UTF-8 cannot be stored as it is: the JSON payload
// holds U+FFFD for each bad byte. Before, a course requested with topic
// "Go\xff" came back from Handle with that topic and from Load with
// "Go\ufffd", and a DeployStaging repeated with the same such URL did not
// match the stored URL and was recorded a second time. Such text is
// refused, typed, and nothing is written.
func TestTextThatIsNotUTF8IsRefused(t *testing.T) {
	t.Parallel()
	for _, b := range dt.Backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, b, domain.Options{})
			for _, c := range []struct {
				name string
				from cf.WorkflowState
				cmd  func(id string) aggregates.Command[cf.State]
			}{
				{"topic", "", func(id string) aggregates.Command[cf.State] {
					return cf.RequestGeneration{CourseID: id, Topic: "Go\xff"}
				}},
				{"requester", "", func(id string) aggregates.Command[cf.State] {
					return cf.RequestGeneration{CourseID: id, Topic: "Go", RequestedBy: "u\xfe"}
				}},
				{"outline title", cf.Outlining, func(id string) aggregates.Command[cf.State] {
					return cf.CreateOutline{CourseID: id, Title: "Go\xff", Lessons: []cf.LessonSlot{{1, "a"}}}
				}},
				{"outline summary", cf.Outlining, func(id string) aggregates.Command[cf.State] {
					return cf.CreateOutline{CourseID: id, Title: "Go", Summary: "s\xc3", Lessons: []cf.LessonSlot{{1, "a"}}}
				}},
				{"lesson slot title", cf.Outlining, func(id string) aggregates.Command[cf.State] {
					return cf.CreateOutline{CourseID: id, Title: "Go", Lessons: []cf.LessonSlot{{1, "a"}, {2, "b\xff"}}}
				}},
				{"lesson title", cf.Generating, func(id string) aggregates.Command[cf.State] {
					return cf.GenerateLesson{CourseID: id, Slot: 1, Title: "Goroutines\xff"}
				}},
				{"lesson content URI", cf.Generating, func(id string) aggregates.Command[cf.State] {
					return cf.GenerateLesson{CourseID: id, Slot: 1, Title: "Goroutines", ContentURI: "s3://courses/\xff.md"}
				}},
				{"headline", cf.Generating, func(id string) aggregates.Command[cf.State] {
					return cf.CreateLandingPage{CourseID: id, Headline: "Learn Go\xff", Slug: "go"}
				}},
				{"failure reason", cf.Generating, func(id string) aggregates.Command[cf.State] {
					return cf.Fail{CourseID: id, Reason: "timeout\xff"}
				}},
				{"staging URL", cf.Completed, func(id string) aggregates.Command[cf.State] {
					return cf.DeployStaging{CourseID: id, DistributionID: uuid.NewString(), StagingURL: "https://staging.example.com/\xff"}
				}},
			} {
				id := uuid.NewString()
				if c.from != "" {
					id = course(t, env, c.from)
				}
				// Twice: a refused command stays refused (before, the second
				// deployment was recorded again).
				for range 2 {
					before := dt.Head(t, env.Store)
					_, err := env.Courses.Handle(ctx, dt.Meta(), c.cmd(id))
					var re *aggregates.RuleError
					if !errors.As(err, &re) || re.Rule != "text-utf8" {
						t.Fatalf("%s: error = %v, want a text-utf8 refusal", c.name, err)
					}
					dt.Refused(t, env.Store, before, err, cf.ErrTextEncoding)
				}
			}
			// Valid text is stored and read back as decided.
			id := uuid.NewString()
			res := do(t, env, cf.RequestGeneration{CourseID: id, Topic: "Go \u00e9\u00e8 \U0001F680"})
			a, err := env.Courses.Load(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := a.State.Topic, res.Aggregate.State.Topic; got != want {
				t.Fatalf("topic read back %q, decided %q", got, want)
			}
		})
	}
}
