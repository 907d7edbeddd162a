package coursefactory

import (
	"fmt"
	"unicode/utf8"

	"github.com/brainhq/eventstream/aggregates"
)

// Rules a course command can break. Test for them with errors.Is.
var (
	ErrWorkflowState      = aggregates.Rule("workflow-state", "the command is not allowed in the course's workflow state")
	ErrAfterFailure       = aggregates.Rule("nothing-after-failure", "a failed course accepts only a new generation request")
	ErrAlreadyRequested   = aggregates.Rule("request-while-active", "a course is requested again only after it failed")
	ErrOutlineRequired    = aggregates.Rule("lesson-needs-outline", "lessons are generated only after the outline")
	ErrSlotNotDeclared    = aggregates.Rule("lesson-slot-declared", "the outline does not declare this lesson slot")
	ErrLessonTwice        = aggregates.Rule("lesson-once", "each lesson slot is generated once")
	ErrDuplicateSlot      = aggregates.Rule("outline-slots-unique", "an outline declares each slot once")
	ErrQuizTwice          = aggregates.Rule("quiz-once", "a course has one quiz")
	ErrLandingPageTwice   = aggregates.Rule("landing-page-once", "a course has one landing page")
	ErrLessonsMissing     = aggregates.Rule("lessons-complete", "review needs every declared lesson")
	ErrIncomplete         = aggregates.Rule("completion-requirements", "completion needs the outline, every lesson, the quiz and the landing page")
	ErrDeployNotCompleted = aggregates.Rule("deploy-after-completion", "only a completed course is deployed")
	ErrCourseTenant       = aggregates.Rule("course-tenant", "a course belongs to the tenant that requested it")
	ErrBlank              = aggregates.Rule("text-not-blank", "a topic, title, headline or failure reason has a visible character")
	ErrTextEncoding       = aggregates.Rule("text-utf8", "a course's text is valid UTF-8")
)

// refuseInvalidText refuses the first of fields (name, value pairs) that
// is not valid UTF-8. JSON cannot hold such text: the stored payload
// would have U+FFFD for its bad bytes, so the course read back would
// differ from the one decided (and a deployment repeated with the same
// URL would not match the stored one, and be recorded again).
func refuseInvalidText(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if !utf8.ValidString(fields[i+1]) {
			return aggregates.Refuse(ErrTextEncoding, "%s %q is not valid UTF-8", fields[i], fields[i+1])
		}
	}
	return nil
}

// refuseBlank refuses the first of fields (name, value pairs) that is
// blank.
func refuseBlank(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if aggregates.Blank(fields[i+1]) {
			return aggregates.Refuse(ErrBlank, "%s %q shows nothing", fields[i], fields[i+1])
		}
	}
	return nil
}

type agg = aggregates.Aggregate[State]

// sameTenant refuses a command on an existing course from another tenant
// than the one that requested it.
func sameTenant(a *agg, tenantID string) error {
	if a.Exists() && a.State.TenantID != tenantID {
		return otherTenant()
	}
	return nil
}

func otherTenant() *aggregates.RuleError {
	return aggregates.Refuse(ErrCourseTenant, "the course belongs to another tenant")
}

func owner(s State) string { return s.TenantID }

// transition returns the event of a workflow change.
func transition(a *agg, to WorkflowState) WorkflowTransitioned {
	return WorkflowTransitioned{CourseID: a.ID, From: a.State.Workflow, To: to}
}

// require refuses a command on a missing course, on a failed course, and
// in any state but want.
func require(a *agg, command string, want ...WorkflowState) error {
	if !a.Exists() {
		return a.NotFound()
	}
	if a.State.Workflow == Failed {
		return aggregates.Refuse(ErrAfterFailure, "%s: the course failed (%s); request a new generation", command, a.State.FailReason)
	}
	for _, w := range want {
		if a.State.Workflow == w {
			return nil
		}
	}
	return aggregates.Refuse(ErrWorkflowState, "%s needs the course in %v, it is %s", command, want, a.State.Workflow)
}

// RequestGeneration asks for a course to be generated: on a new course, or
// again after a failure.
type RequestGeneration struct {
	CourseID    string
	Topic       string
	Language    string // empty: DefaultLanguage
	RequestedBy string
}

func (c RequestGeneration) AggregateID() string { return c.CourseID }

func (c RequestGeneration) Decide(a *agg) ([]any, error) {
	if a.Exists() && a.State.Workflow != Failed {
		return nil, aggregates.Refuse(ErrAlreadyRequested, "the course is %s", a.State.Workflow)
	}
	if err := refuseInvalidText("topic", c.Topic, "requested_by", c.RequestedBy, "language", c.Language); err != nil {
		return nil, err
	}
	if err := refuseBlank("topic", c.Topic); err != nil {
		return nil, err
	}
	lang := c.Language
	if lang == "" {
		lang = DefaultLanguage
	}
	return []any{
		GenerationRequested{CourseID: c.CourseID, Topic: c.Topic, RequestedBy: c.RequestedBy, Attempt: a.State.Attempt + 1, Language: lang},
		transition(a, Requested),
	}, nil
}

// StartOutlining moves a requested course to outlining.
type StartOutlining struct{ CourseID string }

func (c StartOutlining) AggregateID() string { return c.CourseID }

func (c StartOutlining) Decide(a *agg) ([]any, error) {
	if err := require(a, "start outlining", Requested); err != nil {
		return nil, err
	}
	return []any{transition(a, Outlining)}, nil
}

// CreateOutline records the outline and its lesson slots, and moves the
// course to generating.
type CreateOutline struct {
	CourseID string
	Title    string
	Summary  string
	Lessons  []LessonSlot
}

func (c CreateOutline) AggregateID() string { return c.CourseID }

func (c CreateOutline) Decide(a *agg) ([]any, error) {
	if err := require(a, "create outline", Outlining); err != nil {
		return nil, err
	}
	if err := refuseInvalidText("title", c.Title, "summary", c.Summary); err != nil {
		return nil, err
	}
	for _, l := range c.Lessons {
		if err := refuseInvalidText(fmt.Sprintf("slot %d's title", l.Slot), l.Title); err != nil {
			return nil, err
		}
	}
	if err := refuseBlank("title", c.Title); err != nil {
		return nil, err
	}
	for _, l := range c.Lessons {
		if err := refuseBlank(fmt.Sprintf("slot %d's title", l.Slot), l.Title); err != nil {
			return nil, err
		}
	}
	seen := map[int]bool{}
	for _, l := range c.Lessons {
		if seen[l.Slot] {
			return nil, aggregates.Refuse(ErrDuplicateSlot, "slot %d is declared twice", l.Slot)
		}
		seen[l.Slot] = true
	}
	return []any{
		OutlineCreated{CourseID: c.CourseID, Title: c.Title, Summary: c.Summary, Lessons: c.Lessons},
		transition(a, Generating),
	}, nil
}

// GenerateLesson records one generated lesson of a declared slot.
type GenerateLesson struct {
	CourseID   string
	Slot       int
	Title      string
	ContentURI string
	WordCount  int
}

func (c GenerateLesson) AggregateID() string { return c.CourseID }

func (c GenerateLesson) Decide(a *agg) ([]any, error) {
	if a.Exists() && !a.State.HasOutline && (a.State.Workflow == Requested || a.State.Workflow == Outlining) {
		return nil, aggregates.Refuse(ErrOutlineRequired, "slot %d: the course has no outline yet", c.Slot)
	}
	if err := require(a, "generate lesson", Generating); err != nil {
		return nil, err
	}
	if _, ok := a.State.Slots[c.Slot]; !ok {
		return nil, aggregates.Refuse(ErrSlotNotDeclared, "slot %d is not in the outline", c.Slot)
	}
	if a.State.Lessons[c.Slot] {
		return nil, aggregates.Refuse(ErrLessonTwice, "slot %d is already generated", c.Slot)
	}
	if err := refuseInvalidText("lesson title", c.Title, "content_uri", c.ContentURI); err != nil {
		return nil, err
	}
	if err := refuseBlank("lesson title", c.Title); err != nil {
		return nil, err
	}
	return []any{LessonGenerated{CourseID: c.CourseID, Slot: c.Slot, Title: c.Title, ContentURI: c.ContentURI, WordCount: c.WordCount}}, nil
}

// CreateQuiz records the course's quiz (while generating or in review).
type CreateQuiz struct {
	CourseID      string
	QuizID        string
	QuestionCount int
}

func (c CreateQuiz) AggregateID() string { return c.CourseID }

func (c CreateQuiz) Decide(a *agg) ([]any, error) {
	if err := require(a, "create quiz", Generating, Review); err != nil {
		return nil, err
	}
	if a.State.HasQuiz {
		return nil, aggregates.Refuse(ErrQuizTwice, "the course already has a quiz")
	}
	return []any{QuizCreated{CourseID: c.CourseID, QuizID: c.QuizID, QuestionCount: c.QuestionCount}}, nil
}

// CreateLandingPage records the course's landing page (while generating or
// in review).
type CreateLandingPage struct {
	CourseID string
	Headline string
	Slug     string
}

func (c CreateLandingPage) AggregateID() string { return c.CourseID }

func (c CreateLandingPage) Decide(a *agg) ([]any, error) {
	if err := require(a, "create landing page", Generating, Review); err != nil {
		return nil, err
	}
	if a.State.HasLanding {
		return nil, aggregates.Refuse(ErrLandingPageTwice, "the course already has a landing page")
	}
	if err := refuseInvalidText("headline", c.Headline, "slug", c.Slug); err != nil {
		return nil, err
	}
	if err := refuseBlank("headline", c.Headline); err != nil {
		return nil, err
	}
	return []any{LandingPageCreated{CourseID: c.CourseID, Headline: c.Headline, Slug: c.Slug}}, nil
}

// SubmitForReview moves a course whose every lesson exists to review.
type SubmitForReview struct{ CourseID string }

func (c SubmitForReview) AggregateID() string { return c.CourseID }

func (c SubmitForReview) Decide(a *agg) ([]any, error) {
	if err := require(a, "submit for review", Generating); err != nil {
		return nil, err
	}
	if missing := a.State.MissingLessons(); len(missing) > 0 {
		return nil, aggregates.Refuse(ErrLessonsMissing, "slots %v have no lesson", missing)
	}
	return []any{transition(a, Review)}, nil
}

// Complete ends a reviewed course's generation.
type Complete struct{ CourseID string }

func (c Complete) AggregateID() string { return c.CourseID }

func (c Complete) Decide(a *agg) ([]any, error) {
	if err := require(a, "complete", Review); err != nil {
		return nil, err
	}
	s := &a.State
	var missing []string
	if !s.HasOutline {
		missing = append(missing, "outline")
	}
	if m := s.MissingLessons(); len(m) > 0 {
		missing = append(missing, "lessons")
	}
	if !s.HasQuiz {
		missing = append(missing, "quiz")
	}
	if !s.HasLanding {
		missing = append(missing, "landing page")
	}
	if len(missing) > 0 {
		return nil, aggregates.Refuse(ErrIncomplete, "missing: %v", missing)
	}
	return []any{
		GenerationCompleted{CourseID: c.CourseID, Title: s.Title, LessonCount: len(s.Lessons), Attempt: s.Attempt},
		transition(a, Completed),
	}, nil
}

// Fail ends a course's generation in failure. Only a new request may follow.
type Fail struct {
	CourseID string
	Reason   string
}

func (c Fail) AggregateID() string { return c.CourseID }

func (c Fail) Decide(a *agg) ([]any, error) {
	if err := require(a, "fail", Requested, Outlining, Generating, Review); err != nil {
		return nil, err
	}
	// A failure says why (course.generation.failed requires a reason);
	// none is the module's refusal, not the schema's.
	if err := refuseInvalidText("reason", c.Reason); err != nil {
		return nil, err
	}
	if err := refuseBlank("reason", c.Reason); err != nil {
		return nil, err
	}
	return []any{
		GenerationFailed{CourseID: c.CourseID, Stage: a.State.Workflow, Reason: c.Reason, Attempt: a.State.Attempt},
		transition(a, Failed),
	}, nil
}

// DeployStaging deploys a completed course to staging for a distribution.
// Deploying again for the same distribution and URL changes nothing, so a
// reaction may deliver it twice.
type DeployStaging struct {
	CourseID       string
	DistributionID string
	StagingURL     string
}

func (c DeployStaging) AggregateID() string { return c.CourseID }

func (c DeployStaging) Decide(a *agg) ([]any, error) {
	if a.Exists() && a.State.Workflow != Failed && a.State.Workflow != Completed && a.State.Workflow != Deployed {
		return nil, aggregates.Refuse(ErrDeployNotCompleted, "the course is %s", a.State.Workflow)
	}
	if err := require(a, "deploy to staging", Completed, Deployed); err != nil {
		return nil, err
	}
	// Before the comparison with the stored URL, which has U+FFFD where
	// such a URL has its bad bytes: the same deployment would not match.
	if err := refuseInvalidText("staging_url", c.StagingURL); err != nil {
		return nil, err
	}
	if url, ok := a.State.Deployments[c.DistributionID]; ok && url == c.StagingURL {
		return nil, nil
	}
	out := []any{DeployedStaging{CourseID: c.CourseID, DistributionID: c.DistributionID, StagingURL: c.StagingURL}}
	if a.State.Workflow != Deployed {
		out = append(out, transition(a, Deployed))
	}
	return out, nil
}

// Commands' Decide methods are what the repository calls.
var (
	_ aggregates.Command[State] = RequestGeneration{}
	_ aggregates.Command[State] = StartOutlining{}
	_ aggregates.Command[State] = CreateOutline{}
	_ aggregates.Command[State] = GenerateLesson{}
	_ aggregates.Command[State] = CreateQuiz{}
	_ aggregates.Command[State] = CreateLandingPage{}
	_ aggregates.Command[State] = SubmitForReview{}
	_ aggregates.Command[State] = Complete{}
	_ aggregates.Command[State] = Fail{}
	_ aggregates.Command[State] = DeployStaging{}
)
