package coursefactory

import (
	"fmt"
	"sort"

	"github.com/brainhq/eventstream/aggregates"
)

// WorkflowState is where a course is in its generation workflow:
// requested → outlining → generating → review → completed | failed, then
// deployed. A failed course accepts only a new request.
type WorkflowState string

// Workflow states.
const (
	None       WorkflowState = "none"
	Requested  WorkflowState = "requested"
	Outlining  WorkflowState = "outlining"
	Generating WorkflowState = "generating"
	Review     WorkflowState = "review"
	Completed  WorkflowState = "completed"
	Failed     WorkflowState = "failed"
	Deployed   WorkflowState = "deployed"
)

// State is a course rebuilt from its events. It is encoded as JSON in
// snapshots (SnapshotSchemaVersion).
type State struct {
	CourseID string `json:"course_id"`
	// TenantID is the tenant whose event opened the course's stream (the
	// one that requested it), the only one whose commands it takes.
	TenantID    string            `json:"tenant_id"`
	Workflow    WorkflowState     `json:"workflow"`
	Topic       string            `json:"topic"`
	Language    string            `json:"language"`
	Attempt     int               `json:"attempt"`
	Title       string            `json:"title"`
	HasOutline  bool              `json:"has_outline"`
	Slots       map[int]string    `json:"slots"`   // declared slot → title
	Lessons     map[int]bool      `json:"lessons"` // generated slots
	HasQuiz     bool              `json:"has_quiz"`
	HasLanding  bool              `json:"has_landing"`
	FailReason  string            `json:"fail_reason,omitempty"`
	Deployments map[string]string `json:"deployments"` // distribution id → staging URL
}

// SnapshotSchemaVersion is the version of State's JSON encoding (2:
// TenantID, which a version 1 snapshot lacks).
const SnapshotSchemaVersion = 2

func newState(id string) State {
	return State{CourseID: id, Workflow: None, Slots: map[int]string{}, Lessons: map[int]bool{}, Deployments: map[string]string{}}
}

// MissingLessons returns the declared slots without a generated lesson.
func (s *State) MissingLessons() []int {
	var out []int
	for slot := range s.Slots {
		if !s.Lessons[slot] {
			out = append(out, slot)
		}
	}
	sort.Ints(out)
	return out
}

func apply(s *State, e aggregates.Event) error {
	// The course is the tenant's whose event opened its stream (as the
	// API's stream ownership has it).
	if s.TenantID == "" {
		s.TenantID = e.Meta.TenantID
	}
	switch d := e.Data.(type) {
	case GenerationRequested:
		// A new request starts the course over, for the same tenant.
		tenant := s.TenantID
		*s = newState(d.CourseID)
		s.Topic, s.Language, s.Attempt = d.Topic, d.Language, d.Attempt
		s.TenantID = tenant
	case WorkflowTransitioned:
		s.Workflow = d.To
	case OutlineCreated:
		s.HasOutline, s.Title = true, d.Title
		for _, l := range d.Lessons {
			s.Slots[l.Slot] = l.Title
		}
	case LessonGenerated:
		s.Lessons[d.Slot] = true
	case QuizCreated:
		s.HasQuiz = true
	case LandingPageCreated:
		s.HasLanding = true
	case GenerationCompleted:
	case GenerationFailed:
		s.FailReason = d.Reason
	case DeployedStaging:
		s.Deployments[d.DistributionID] = d.StagingURL
	default:
		return fmt.Errorf("coursefactory: unexpected event %T", e.Data)
	}
	return nil
}
