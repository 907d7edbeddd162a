package coursefactory

import (
	"fmt"

	"github.com/brainhq/eventstream/aggregates"
)

// Event type names. They are the stored names: never derive them from the
// Go types below, which may be renamed freely.
const (
	TypeGenerationRequested  = "course.generation.requested"
	TypeOutlineCreated       = "course.outline.created"
	TypeLessonGenerated      = "course.lesson.generated"
	TypeQuizCreated          = "course.quiz.created"
	TypeLandingPageCreated   = "course.landing_page.created"
	TypeGenerationCompleted  = "course.generation.completed"
	TypeGenerationFailed     = "course.generation.failed"
	TypeWorkflowTransitioned = "course.workflow.transitioned"
	TypeDeployedStaging      = "course.deployed.staging"
)

// DefaultLanguage is the language of course.generation.requested v1 events,
// which predate the field.
const DefaultLanguage = "en"

// GenerationRequested is course.generation.requested v2.
type GenerationRequested struct {
	CourseID    string `json:"course_id"`
	Topic       string `json:"topic"`
	RequestedBy string `json:"requested_by,omitempty"`
	Attempt     int    `json:"attempt"`
	Language    string `json:"language"`
}

// OutlineCreated is course.outline.created v1.
type OutlineCreated struct {
	CourseID string       `json:"course_id"`
	Title    string       `json:"title"`
	Summary  string       `json:"summary,omitempty"`
	Lessons  []LessonSlot `json:"lessons"`
}

// LessonSlot is one lesson the outline declares.
type LessonSlot struct {
	Slot  int    `json:"slot"`
	Title string `json:"title"`
}

// LessonGenerated is course.lesson.generated v1.
type LessonGenerated struct {
	CourseID   string `json:"course_id"`
	Slot       int    `json:"slot"`
	Title      string `json:"title"`
	ContentURI string `json:"content_uri,omitempty"`
	WordCount  int    `json:"word_count,omitempty"`
}

// QuizCreated is course.quiz.created v1.
type QuizCreated struct {
	CourseID      string `json:"course_id"`
	QuizID        string `json:"quiz_id"`
	QuestionCount int    `json:"question_count"`
}

// LandingPageCreated is course.landing_page.created v1.
type LandingPageCreated struct {
	CourseID string `json:"course_id"`
	Headline string `json:"headline"`
	Slug     string `json:"slug"`
}

// GenerationCompleted is course.generation.completed v1.
type GenerationCompleted struct {
	CourseID    string `json:"course_id"`
	Title       string `json:"title"`
	LessonCount int    `json:"lesson_count"`
	Attempt     int    `json:"attempt"`
}

// GenerationFailed is course.generation.failed v1.
type GenerationFailed struct {
	CourseID string        `json:"course_id"`
	Stage    WorkflowState `json:"stage"`
	Reason   string        `json:"reason"`
	Attempt  int           `json:"attempt"`
}

// WorkflowTransitioned is course.workflow.transitioned v1, emitted with
// every change of workflow state.
type WorkflowTransitioned struct {
	CourseID string        `json:"course_id"`
	From     WorkflowState `json:"from"`
	To       WorkflowState `json:"to"`
}

// DeployedStaging is course.deployed.staging v1.
type DeployedStaging struct {
	CourseID       string `json:"course_id"`
	DistributionID string `json:"distribution_id"`
	StagingURL     string `json:"staging_url"`
}

// Register binds the module's event types to reg, with the upcaster of
// course.generation.requested v1→v2, and declares the "course." types its
// own.
func Register(reg *aggregates.Registry) {
	aggregates.Register[GenerationRequested](reg, TypeGenerationRequested, 2)
	aggregates.Register[OutlineCreated](reg, TypeOutlineCreated, 1)
	aggregates.Register[LessonGenerated](reg, TypeLessonGenerated, 1)
	aggregates.Register[QuizCreated](reg, TypeQuizCreated, 1)
	aggregates.Register[LandingPageCreated](reg, TypeLandingPageCreated, 1)
	aggregates.Register[GenerationCompleted](reg, TypeGenerationCompleted, 1)
	aggregates.Register[GenerationFailed](reg, TypeGenerationFailed, 1)
	aggregates.Register[WorkflowTransitioned](reg, TypeWorkflowTransitioned, 1)
	aggregates.Register[DeployedStaging](reg, TypeDeployedStaging, 1)
	reg.RegisterUpcaster(TypeGenerationRequested, 1, UpcastGenerationRequestedV1)
	reg.Own("course.")
}

// UpcastGenerationRequestedV1 brings course.generation.requested v1 to v2:
// v1 had no language, and every course was generated in English.
func UpcastGenerationRequestedV1(p map[string]any) (map[string]any, error) {
	if _, ok := p["language"]; ok {
		return nil, fmt.Errorf("a v1 payload has no language field")
	}
	p["language"] = DefaultLanguage
	return p, nil
}
