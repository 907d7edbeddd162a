package distribution

import "github.com/brainhq/eventstream/aggregates"

// Event type names (the stored names).
const (
	TypeCreated           = "distribution.created"
	TypeUpdated           = "distribution.updated"
	TypeDeleted           = "distribution.deleted"
	TypePublished         = "distribution.published"
	TypeUnpublished       = "distribution.unpublished"
	TypeViewed            = "distribution.viewed"
	TypeEnrollmentClicked = "distribution.enrollment_clicked"
	TypeMicroNicheCreated = "distribution.micro_niche_created"
	TypeVersionBumped     = "distribution.version_bumped"
)

// Channels a course can be offered on.
const (
	ChannelWeb         = "web"
	ChannelMarketplace = "marketplace"
	ChannelEmail       = "email"
	ChannelSocial      = "social"
	ChannelPartner     = "partner"
)

// Channels returns every channel (the enum of distribution.created's
// channel).
func Channels() []string {
	return []string{ChannelWeb, ChannelMarketplace, ChannelEmail, ChannelSocial, ChannelPartner}
}

// Created is distribution.created v1.
type Created struct {
	DistributionID string `json:"distribution_id"`
	CourseID       string `json:"course_id"`
	Channel        string `json:"channel"`
	Title          string `json:"title"`
	Version        string `json:"version"`
}

// Changes are the metadata fields an update sets; nil fields are unchanged.
type Changes struct {
	Title       *string   `json:"title,omitempty"`
	Description *string   `json:"description,omitempty"`
	PriceCents  *int64    `json:"price_cents,omitempty"`
	Currency    *string   `json:"currency,omitempty"`
	StagingURL  *string   `json:"staging_url,omitempty"`
	Tags        *[]string `json:"tags,omitempty"`
}

// Updated is distribution.updated v1.
type Updated struct {
	DistributionID string  `json:"distribution_id"`
	CourseID       string  `json:"course_id"`
	Changes        Changes `json:"changes"`
}

// Deleted is distribution.deleted v1.
type Deleted struct {
	DistributionID string `json:"distribution_id"`
	CourseID       string `json:"course_id"`
	Reason         string `json:"reason,omitempty"`
}

// Published is distribution.published v1.
type Published struct {
	DistributionID string `json:"distribution_id"`
	CourseID       string `json:"course_id"`
	Version        string `json:"version"`
}

// Unpublished is distribution.unpublished v1.
type Unpublished struct {
	DistributionID string `json:"distribution_id"`
	CourseID       string `json:"course_id"`
	Reason         string `json:"reason,omitempty"`
}

// Viewed is distribution.viewed v1.
type Viewed struct {
	DistributionID string `json:"distribution_id"`
	CourseID       string `json:"course_id"`
	VisitorID      string `json:"visitor_id,omitempty"`
	Referrer       string `json:"referrer,omitempty"`
}

// EnrollmentClicked is distribution.enrollment_clicked v1.
type EnrollmentClicked struct {
	DistributionID string `json:"distribution_id"`
	CourseID       string `json:"course_id"`
	VisitorID      string `json:"visitor_id,omitempty"`
}

// MicroNicheCreated is distribution.micro_niche_created v1.
type MicroNicheCreated struct {
	DistributionID string   `json:"distribution_id"`
	CourseID       string   `json:"course_id"`
	NicheID        string   `json:"niche_id"`
	Niche          string   `json:"niche"`
	Keywords       []string `json:"keywords,omitempty"`
}

// VersionBumped is distribution.version_bumped v1.
type VersionBumped struct {
	DistributionID string `json:"distribution_id"`
	CourseID       string `json:"course_id"`
	Bump           Bump   `json:"bump"`
	FromVersion    string `json:"from_version"`
	ToVersion      string `json:"to_version"`
	Reason         string `json:"reason,omitempty"`
}

// Register binds the module's event types to reg and declares the
// "distribution." types its own.
func Register(reg *aggregates.Registry) {
	aggregates.Register[Created](reg, TypeCreated, 1)
	aggregates.Register[Updated](reg, TypeUpdated, 1)
	aggregates.Register[Deleted](reg, TypeDeleted, 1)
	aggregates.Register[Published](reg, TypePublished, 1)
	aggregates.Register[Unpublished](reg, TypeUnpublished, 1)
	aggregates.Register[Viewed](reg, TypeViewed, 1)
	aggregates.Register[EnrollmentClicked](reg, TypeEnrollmentClicked, 1)
	aggregates.Register[MicroNicheCreated](reg, TypeMicroNicheCreated, 1)
	aggregates.Register[VersionBumped](reg, TypeVersionBumped, 1)
	reg.Own("distribution.")
}
