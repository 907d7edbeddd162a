package distribution

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
)

// Rules a distribution command can break.
var (
	ErrDeleted          = aggregates.Rule("nothing-after-deletion", "a deleted distribution accepts no command")
	ErrExists           = aggregates.Rule("distribution-exists", "the distribution already exists with other content")
	ErrAlreadyPublished = aggregates.Rule("publish-when-unpublished", "the distribution is already published")
	ErrNotPublished     = aggregates.Rule("requires-published", "only a published distribution accepts this")
	ErrNicheExists      = aggregates.Rule("niche-unique", "the distribution already has a micro-niche of that name")
	ErrBadBump          = aggregates.Rule("semver-bump", "a version moves by one major, minor or patch step")
	ErrBadVersion       = aggregates.Rule("semver-range", "a version's numbers must fit the module's integers")
	ErrNoChanges        = aggregates.Rule("update-has-changes", "an update sets at least one field")
	ErrOtherCourse      = aggregates.Rule("update-own-course", "the distribution offers another course")
	ErrTenant           = aggregates.Rule("distribution-tenant", "a distribution belongs to the tenant that created it")
	ErrBlank            = aggregates.Rule("text-not-blank", "a title, channel, tag, niche, keyword or reason has a visible character")
	ErrUnknownChannel   = aggregates.Rule("channel-known", "a distribution's channel is one of Channels()")
	ErrTextEncoding     = aggregates.Rule("text-utf8", "a distribution's text is valid UTF-8")
	ErrNicheIDExists    = aggregates.Rule("niche-id-unique", "a micro-niche id names one micro-niche of the distribution")
)

// refuseInvalidText refuses the first of values that is not valid UTF-8:
// JSON stores U+FFFD for its bad bytes, so what is read back is not what
// was decided (two niche names differing only there would be one name,
// held by two niches).
func refuseInvalidText(what string, values ...string) error {
	for _, v := range values {
		if !utf8.ValidString(v) {
			return aggregates.Refuse(ErrTextEncoding, "%s %q is not valid UTF-8", what, v)
		}
	}
	return nil
}

// refuseBlankReason refuses a reason that is given but shows nothing; no
// reason at all is omitted from the event.
func refuseBlankReason(reason string) error {
	if reason != "" && aggregates.Blank(reason) {
		return aggregates.Refuse(ErrBlank, "reason %q shows nothing", reason)
	}
	return nil
}

// refuseBlank refuses the first of values that is blank; what names them
// in the message.
func refuseBlank(what string, values ...string) error {
	for i, v := range values {
		if aggregates.Blank(v) {
			if len(values) > 1 {
				what = fmt.Sprintf("%s %d", what, i+1)
			}
			return aggregates.Refuse(ErrBlank, "%s %q shows nothing", what, v)
		}
	}
	return nil
}

type agg = aggregates.Aggregate[State]

// sameTenant refuses a command on an existing distribution from another
// tenant than the one that created it.
func sameTenant(a *agg, tenantID string) error {
	if a.Exists() && a.State.TenantID != tenantID {
		return otherTenant()
	}
	return nil
}

func otherTenant() *aggregates.RuleError {
	return aggregates.Refuse(ErrTenant, "the distribution belongs to another tenant")
}

func owner(s State) string { return s.TenantID }

// live refuses a command on a missing or deleted distribution.
func live(a *agg) error {
	if !a.Exists() {
		return a.NotFound()
	}
	if a.State.Deleted {
		return aggregates.Refuse(ErrDeleted, "the distribution was deleted")
	}
	return nil
}

// distributionNamespace keys distribution ids derived from course ids.
var distributionNamespace = uuid.MustParse("6b0d6a43-9e7c-4c3f-8b8e-0f7d2a5c9e11")

// IDForCourse returns the id of a course's distribution on a channel. It
// is a function of its inputs, so however often a reaction creates "the
// distribution of course X", it names the same aggregate.
func IDForCourse(courseID, channel string) string {
	return uuid.NewSHA1(distributionNamespace, []byte("course/"+courseID+"/channel/"+channel)).String()
}

// Create offers a course on a channel. Creating it again for the same
// course and channel changes nothing (a retry); for another course or
// channel it is refused.
type Create struct {
	DistributionID string
	CourseID       string
	Channel        string
	Title          string
	Version        string // empty: "1.0.0"
}

func (c Create) AggregateID() string { return c.DistributionID }

func (c Create) Decide(a *agg) ([]any, error) {
	version := c.Version
	if version == "" {
		version = "1.0.0"
	}
	ev := Created{DistributionID: c.DistributionID, CourseID: c.CourseID, Channel: c.Channel, Title: c.Title, Version: version}
	if a.Exists() {
		if a.State.Deleted {
			return nil, aggregates.Refuse(ErrDeleted, "the distribution was deleted")
		}
		s := a.State
		if s.CourseID == c.CourseID && s.Channel == c.Channel {
			return nil, nil
		}
		return nil, aggregates.Refuse(ErrExists, "it offers course %s on %s", s.CourseID, s.Channel)
	}
	if err := refuseInvalidText("title", c.Title); err != nil {
		return nil, err
	}
	if err := refuseBlank("title", c.Title); err != nil {
		return nil, err
	}
	if err := refuseBlank("channel", c.Channel); err != nil {
		return nil, err
	}
	if !slices.Contains(Channels(), c.Channel) {
		return nil, aggregates.Refuse(ErrUnknownChannel, "channel %q: want one of %v", c.Channel, Channels())
	}
	// The schema checks the version's form; numbers too large to count
	// would make a distribution whose version can never be bumped.
	if _, err := ParseSemver(version); errors.Is(err, strconv.ErrRange) {
		return nil, aggregates.Refuse(ErrBadVersion, "%v", err)
	}
	return []any{ev}, nil
}

// Update changes metadata. Fields already at the given values are left
// out; an update that changes nothing writes nothing. CourseID, when set,
// must be the course the distribution offers (a reaction to a course's
// event updates only that course's distribution).
type Update struct {
	DistributionID string
	CourseID       string
	Changes        Changes
}

func (c Update) AggregateID() string { return c.DistributionID }

func (c Update) Decide(a *agg) ([]any, error) {
	if err := live(a); err != nil {
		return nil, err
	}
	in, s := c.Changes, a.State
	if c.CourseID != "" && c.CourseID != s.CourseID {
		return nil, aggregates.Refuse(ErrOtherCourse, "update for course %s: the distribution offers course %s", c.CourseID, s.CourseID)
	}
	if in == (Changes{}) {
		return nil, aggregates.Refuse(ErrNoChanges, "no field given")
	}
	if in.Title != nil {
		if err := refuseInvalidText("title", *in.Title); err != nil {
			return nil, err
		}
		if err := refuseBlank("title", *in.Title); err != nil {
			return nil, err
		}
	}
	// Before the comparisons with the stored values, which have U+FFFD
	// where such text has its bad bytes: the same update would not match.
	for _, f := range []struct {
		what string
		v    *string
	}{{"description", in.Description}, {"currency", in.Currency}, {"staging URL", in.StagingURL}} {
		if f.v == nil {
			continue
		}
		if err := refuseInvalidText(f.what, *f.v); err != nil {
			return nil, err
		}
	}
	if in.Tags != nil {
		if err := refuseInvalidText("tag", *in.Tags...); err != nil {
			return nil, err
		}
		if err := refuseBlank("tag", *in.Tags...); err != nil {
			return nil, err
		}
	}
	var out Changes
	if in.Title != nil && *in.Title != s.Title {
		out.Title = in.Title
	}
	if in.Description != nil && *in.Description != s.Description {
		out.Description = in.Description
	}
	if in.PriceCents != nil && (s.PriceCents == nil || *in.PriceCents != *s.PriceCents) {
		out.PriceCents = in.PriceCents
	}
	if in.Currency != nil && *in.Currency != s.Currency {
		out.Currency = in.Currency
	}
	if in.StagingURL != nil && *in.StagingURL != s.StagingURL {
		out.StagingURL = in.StagingURL
	}
	if in.Tags != nil && !slices.Equal(*in.Tags, s.Tags) {
		out.Tags = in.Tags
	}
	if out == (Changes{}) {
		return nil, nil
	}
	return []any{Updated{DistributionID: a.ID, CourseID: s.CourseID, Changes: out}}, nil
}

// Delete removes the distribution; nothing may follow.
type Delete struct {
	DistributionID string
	Reason         string
}

func (c Delete) AggregateID() string { return c.DistributionID }

func (c Delete) Decide(a *agg) ([]any, error) {
	if err := live(a); err != nil {
		return nil, err
	}
	if err := refuseInvalidText("reason", c.Reason); err != nil {
		return nil, err
	}
	if err := refuseBlankReason(c.Reason); err != nil {
		return nil, err
	}
	return []any{Deleted{DistributionID: a.ID, CourseID: a.State.CourseID, Reason: c.Reason}}, nil
}

// Publish makes an unpublished distribution live at its current version.
type Publish struct{ DistributionID string }

func (c Publish) AggregateID() string { return c.DistributionID }

func (c Publish) Decide(a *agg) ([]any, error) {
	if err := live(a); err != nil {
		return nil, err
	}
	if a.State.Published {
		return nil, aggregates.Refuse(ErrAlreadyPublished, "published at %s", a.State.Version)
	}
	return []any{Published{DistributionID: a.ID, CourseID: a.State.CourseID, Version: a.State.Version}}, nil
}

// Unpublish takes a published distribution offline.
type Unpublish struct {
	DistributionID string
	Reason         string
}

func (c Unpublish) AggregateID() string { return c.DistributionID }

func (c Unpublish) Decide(a *agg) ([]any, error) {
	if err := live(a); err != nil {
		return nil, err
	}
	if !a.State.Published {
		return nil, aggregates.Refuse(ErrNotPublished, "unpublish: the distribution is not published")
	}
	if err := refuseInvalidText("reason", c.Reason); err != nil {
		return nil, err
	}
	if err := refuseBlankReason(c.Reason); err != nil {
		return nil, err
	}
	return []any{Unpublished{DistributionID: a.ID, CourseID: a.State.CourseID, Reason: c.Reason}}, nil
}

// RecordView records a view of a published distribution.
type RecordView struct {
	DistributionID string
	VisitorID      string
	Referrer       string
}

func (c RecordView) AggregateID() string { return c.DistributionID }

func (c RecordView) Decide(a *agg) ([]any, error) {
	if err := live(a); err != nil {
		return nil, err
	}
	if !a.State.Published {
		return nil, aggregates.Refuse(ErrNotPublished, "view: the distribution is not published")
	}
	if err := refuseInvalidText("visitor id", c.VisitorID); err != nil {
		return nil, err
	}
	if err := refuseInvalidText("referrer", c.Referrer); err != nil {
		return nil, err
	}
	return []any{Viewed{DistributionID: a.ID, CourseID: a.State.CourseID, VisitorID: c.VisitorID, Referrer: c.Referrer}}, nil
}

// RecordEnrollmentClick records an enrollment click on a published
// distribution.
type RecordEnrollmentClick struct {
	DistributionID string
	VisitorID      string
}

func (c RecordEnrollmentClick) AggregateID() string { return c.DistributionID }

func (c RecordEnrollmentClick) Decide(a *agg) ([]any, error) {
	if err := live(a); err != nil {
		return nil, err
	}
	if !a.State.Published {
		return nil, aggregates.Refuse(ErrNotPublished, "enrollment click: the distribution is not published")
	}
	if err := refuseInvalidText("visitor id", c.VisitorID); err != nil {
		return nil, err
	}
	return []any{EnrollmentClicked{DistributionID: a.ID, CourseID: a.State.CourseID, VisitorID: c.VisitorID}}, nil
}

// CreateMicroNiche adds a targeted variant; niche names are unique, and so
// are niche ids: a second niche of a name, or under an id in use, is
// refused, whatever its other fields.
type CreateMicroNiche struct {
	DistributionID string
	NicheID        string
	Niche          string
	Keywords       []string
}

func (c CreateMicroNiche) AggregateID() string { return c.DistributionID }

func (c CreateMicroNiche) Decide(a *agg) ([]any, error) {
	if err := live(a); err != nil {
		return nil, err
	}
	if err := refuseInvalidText("niche", c.Niche); err != nil {
		return nil, err
	}
	if err := refuseInvalidText("keyword", c.Keywords...); err != nil {
		return nil, err
	}
	if id, ok := a.State.Niches[c.Niche]; ok {
		return nil, aggregates.Refuse(ErrNicheExists, "niche %q exists as %s", c.Niche, id)
	}
	// The id names the niche (the event's niche_id): one id under two
	// names would be two niches that readers keyed by id take for one.
	for name, id := range a.State.Niches {
		if id == c.NicheID {
			return nil, aggregates.Refuse(ErrNicheIDExists, "niche id %s is niche %q", id, name)
		}
	}
	if err := refuseBlank("niche", c.Niche); err != nil {
		return nil, err
	}
	if err := refuseBlank("keyword", c.Keywords...); err != nil {
		return nil, err
	}
	return []any{MicroNicheCreated{DistributionID: a.ID, CourseID: a.State.CourseID, NicheID: c.NicheID, Niche: c.Niche, Keywords: c.Keywords}}, nil
}

// BumpVersion moves the version one major, minor or patch step. To, when
// given, must be the version the bump yields.
type BumpVersion struct {
	DistributionID string
	Bump           Bump
	To             string
	Reason         string
}

func (c BumpVersion) AggregateID() string { return c.DistributionID }

func (c BumpVersion) Decide(a *agg) ([]any, error) {
	if err := live(a); err != nil {
		return nil, err
	}
	from, err := ParseSemver(a.State.Version)
	if err != nil {
		return nil, aggregates.Refuse(ErrBadBump, "current %v", err)
	}
	next, err := from.Next(c.Bump)
	if err != nil {
		return nil, aggregates.Refuse(ErrBadBump, "%v", err)
	}
	if c.To != "" && c.To != next.String() {
		return nil, aggregates.Refuse(ErrBadBump, "a %s bump of %s gives %s, not %s", c.Bump, from, next, c.To)
	}
	if err := refuseInvalidText("reason", c.Reason); err != nil {
		return nil, err
	}
	if err := refuseBlankReason(c.Reason); err != nil {
		return nil, err
	}
	return []any{VersionBumped{DistributionID: a.ID, CourseID: a.State.CourseID, Bump: c.Bump, FromVersion: from.String(), ToVersion: next.String(), Reason: c.Reason}}, nil
}

var (
	_ aggregates.Command[State] = Create{}
	_ aggregates.Command[State] = Update{}
	_ aggregates.Command[State] = Delete{}
	_ aggregates.Command[State] = Publish{}
	_ aggregates.Command[State] = Unpublish{}
	_ aggregates.Command[State] = RecordView{}
	_ aggregates.Command[State] = RecordEnrollmentClick{}
	_ aggregates.Command[State] = CreateMicroNiche{}
	_ aggregates.Command[State] = BumpVersion{}
)
