package distribution

import (
	"fmt"

	"github.com/brainhq/eventstream/aggregates"
)

// State is a distribution rebuilt from its events.
type State struct {
	DistributionID string `json:"distribution_id"`
	// TenantID is the tenant whose event opened the distribution's stream
	// (the one that created it), the only one whose commands it takes.
	TenantID         string            `json:"tenant_id"`
	CourseID         string            `json:"course_id"`
	Channel          string            `json:"channel"`
	Title            string            `json:"title"`
	Description      string            `json:"description,omitempty"`
	PriceCents       *int64            `json:"price_cents,omitempty"`
	Currency         string            `json:"currency,omitempty"`
	StagingURL       string            `json:"staging_url,omitempty"`
	Tags             []string          `json:"tags,omitempty"`
	Version          string            `json:"version"`
	Published        bool              `json:"published"`
	Deleted          bool              `json:"deleted"`
	Views            int64             `json:"views"`
	EnrollmentClicks int64             `json:"enrollment_clicks"`
	Niches           map[string]string `json:"niches"` // niche name → niche id
}

// SnapshotSchemaVersion is the version of State's JSON encoding (2:
// TenantID, which a version 1 snapshot lacks).
const SnapshotSchemaVersion = 2

func newState(id string) State { return State{DistributionID: id, Niches: map[string]string{}} }

func apply(s *State, e aggregates.Event) error {
	// The distribution is the tenant's whose event opened its stream (as
	// the API's stream ownership has it).
	if s.TenantID == "" {
		s.TenantID = e.Meta.TenantID
	}
	switch d := e.Data.(type) {
	case Created:
		s.CourseID, s.Channel, s.Title, s.Version = d.CourseID, d.Channel, d.Title, d.Version
	case Updated:
		c := d.Changes
		if c.Title != nil {
			s.Title = *c.Title
		}
		if c.Description != nil {
			s.Description = *c.Description
		}
		if c.PriceCents != nil {
			p := *c.PriceCents
			s.PriceCents = &p
		}
		if c.Currency != nil {
			s.Currency = *c.Currency
		}
		if c.StagingURL != nil {
			s.StagingURL = *c.StagingURL
		}
		if c.Tags != nil {
			s.Tags = append([]string(nil), (*c.Tags)...)
		}
	case Deleted:
		s.Deleted, s.Published = true, false
	case Published:
		s.Published = true
	case Unpublished:
		s.Published = false
	case Viewed:
		s.Views++
	case EnrollmentClicked:
		s.EnrollmentClicks++
	case MicroNicheCreated:
		s.Niches[d.Niche] = d.NicheID
	case VersionBumped:
		s.Version = d.ToVersion
	default:
		return fmt.Errorf("distribution: unexpected event %T", e.Data)
	}
	return nil
}
