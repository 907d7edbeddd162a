package distribution_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/aggregates/domain"
	dt "github.com/brainhq/eventstream/aggregates/internal/domaintest"
	"github.com/brainhq/eventstream/eventstore"
)

var ctx = context.Background()

func do(t *testing.T, env *dt.Env, c aggregates.Command[distribution.State]) aggregates.Result[distribution.State] {
	t.Helper()
	res, err := env.Distributions.Handle(ctx, dt.Meta(), c)
	if err != nil {
		t.Fatalf("%T: %v", c, err)
	}
	return res
}

func create(t *testing.T, env *dt.Env) (id, course string) {
	t.Helper()
	id, course = uuid.NewString(), uuid.NewString()
	do(t, env, distribution.Create{DistributionID: id, CourseID: course, Channel: distribution.ChannelWeb, Title: "Go concurrency"})
	return id, course
}

func ptr[T any](v T) *T { return &v }

func TestDistributionEmitsEveryEvent(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, course := create(t, env)
	do(t, env, distribution.Update{DistributionID: id, Changes: distribution.Changes{Title: ptr("Go concurrency, 2nd ed."), PriceCents: ptr(int64(4900)), Currency: ptr("EUR"), Tags: &[]string{"go", "concurrency"}}})
	do(t, env, distribution.Publish{DistributionID: id})
	do(t, env, distribution.RecordView{DistributionID: id, VisitorID: "v1", Referrer: "newsletter"})
	do(t, env, distribution.RecordView{DistributionID: id})
	do(t, env, distribution.RecordEnrollmentClick{DistributionID: id, VisitorID: "v1"})
	do(t, env, distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "go for data engineers", Keywords: []string{"go", "etl"}})
	do(t, env, distribution.BumpVersion{DistributionID: id, Bump: distribution.Minor, To: "1.1.0", Reason: "new lesson"})
	do(t, env, distribution.Unpublish{DistributionID: id, Reason: "rework"})
	res := do(t, env, distribution.Delete{DistributionID: id, Reason: "retired"})

	got := dt.Types(t, env.Store, "distribution-"+id)
	want := []string{distribution.TypeCreated, distribution.TypeUpdated, distribution.TypePublished, distribution.TypeViewed, distribution.TypeViewed,
		distribution.TypeEnrollmentClicked, distribution.TypeMicroNicheCreated, distribution.TypeVersionBumped, distribution.TypeUnpublished, distribution.TypeDeleted}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}
	evs, _ := env.Store.ReadStream(ctx, "distribution-"+id, 1, 0)
	for _, e := range evs {
		var p struct {
			DistributionID string `json:"distribution_id"`
			CourseID       string `json:"course_id"`
		}
		_ = json.Unmarshal(e.Payload, &p)
		if p.DistributionID != id || p.CourseID != course {
			t.Fatalf("%s payload %s lacks the distribution and course ids", e.Type, e.Payload)
		}
	}
	s := res.Aggregate.State
	if !s.Deleted || s.Published || s.Views != 2 || s.EnrollmentClicks != 1 || s.Version != "1.1.0" || s.Title != "Go concurrency, 2nd ed." || *s.PriceCents != 4900 || len(s.Niches) != 1 {
		t.Fatalf("state = %+v", s)
	}
}

func TestDistributionRefusals(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	type setup int
	const (
		fresh setup = iota
		published
		deleted
		missing
	)
	build := func(s setup) string {
		if s == missing {
			return uuid.NewString()
		}
		id, _ := create(t, env)
		switch s {
		case published:
			do(t, env, distribution.Publish{DistributionID: id})
		case deleted:
			do(t, env, distribution.Delete{DistributionID: id})
		}
		return id
	}
	cases := []struct {
		name string
		from setup
		cmd  func(id string) aggregates.Command[distribution.State]
		want error
	}{
		{"update a missing distribution", missing, func(id string) aggregates.Command[distribution.State] {
			return distribution.Update{DistributionID: id, Changes: distribution.Changes{Title: ptr("x")}}
		}, aggregates.ErrNotFound},
		{"publish a missing distribution", missing, func(id string) aggregates.Command[distribution.State] {
			return distribution.Publish{DistributionID: id}
		}, aggregates.ErrNotFound},
		{"create again for another course", fresh, func(id string) aggregates.Command[distribution.State] {
			return distribution.Create{DistributionID: id, CourseID: uuid.NewString(), Channel: "web", Title: "x"}
		}, distribution.ErrExists},
		{"create with an unknown channel", missing, func(id string) aggregates.Command[distribution.State] {
			return distribution.Create{DistributionID: id, CourseID: uuid.NewString(), Channel: "fax", Title: "x"}
		}, distribution.ErrUnknownChannel},
		{"create with a version that is not semver breaks the schema", missing, func(id string) aggregates.Command[distribution.State] {
			return distribution.Create{DistributionID: id, CourseID: uuid.NewString(), Channel: "web", Title: "x", Version: "v1"}
		}, eventstore.ErrValidation},
		{"update for another course", fresh, func(id string) aggregates.Command[distribution.State] {
			return distribution.Update{DistributionID: id, CourseID: uuid.NewString(), Changes: distribution.Changes{Title: ptr("x")}}
		}, distribution.ErrOtherCourse},
		{"update with no field", fresh, func(id string) aggregates.Command[distribution.State] { return distribution.Update{DistributionID: id} }, distribution.ErrNoChanges},
		{"update with a bad currency breaks the schema", fresh, func(id string) aggregates.Command[distribution.State] {
			return distribution.Update{DistributionID: id, Changes: distribution.Changes{Currency: ptr("euro")}}
		}, eventstore.ErrValidation},
		{"publish twice", published, func(id string) aggregates.Command[distribution.State] {
			return distribution.Publish{DistributionID: id}
		}, distribution.ErrAlreadyPublished},
		{"unpublish when not published", fresh, func(id string) aggregates.Command[distribution.State] {
			return distribution.Unpublish{DistributionID: id}
		}, distribution.ErrNotPublished},
		{"view while unpublished", fresh, func(id string) aggregates.Command[distribution.State] {
			return distribution.RecordView{DistributionID: id}
		}, distribution.ErrNotPublished},
		{"click while unpublished", fresh, func(id string) aggregates.Command[distribution.State] {
			return distribution.RecordEnrollmentClick{DistributionID: id}
		}, distribution.ErrNotPublished},
		{"bump by an unknown part", fresh, func(id string) aggregates.Command[distribution.State] {
			return distribution.BumpVersion{DistributionID: id, Bump: "huge"}
		}, distribution.ErrBadBump},
		{"bump to a version that skips", fresh, func(id string) aggregates.Command[distribution.State] {
			return distribution.BumpVersion{DistributionID: id, Bump: distribution.Major, To: "3.0.0"}
		}, distribution.ErrBadBump},
		{"bump a patch to a minor version", fresh, func(id string) aggregates.Command[distribution.State] {
			return distribution.BumpVersion{DistributionID: id, Bump: distribution.Patch, To: "1.1.0"}
		}, distribution.ErrBadBump},
	}
	for _, cmd := range []struct {
		name string
		c    func(id string) aggregates.Command[distribution.State]
	}{
		{"update", func(id string) aggregates.Command[distribution.State] {
			return distribution.Update{DistributionID: id, Changes: distribution.Changes{Title: ptr("x")}}
		}},
		{"delete", func(id string) aggregates.Command[distribution.State] { return distribution.Delete{DistributionID: id} }},
		{"publish", func(id string) aggregates.Command[distribution.State] {
			return distribution.Publish{DistributionID: id}
		}},
		{"unpublish", func(id string) aggregates.Command[distribution.State] {
			return distribution.Unpublish{DistributionID: id}
		}},
		{"view", func(id string) aggregates.Command[distribution.State] {
			return distribution.RecordView{DistributionID: id}
		}},
		{"click", func(id string) aggregates.Command[distribution.State] {
			return distribution.RecordEnrollmentClick{DistributionID: id}
		}},
		{"micro-niche", func(id string) aggregates.Command[distribution.State] {
			return distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "n"}
		}},
		{"bump", func(id string) aggregates.Command[distribution.State] {
			return distribution.BumpVersion{DistributionID: id, Bump: distribution.Patch}
		}},
		{"create", func(id string) aggregates.Command[distribution.State] {
			return distribution.Create{DistributionID: id, CourseID: uuid.NewString(), Channel: "web", Title: "x"}
		}},
	} {
		cases = append(cases, struct {
			name string
			from setup
			cmd  func(id string) aggregates.Command[distribution.State]
			want error
		}{cmd.name + " after deletion", deleted, cmd.c, distribution.ErrDeleted})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := build(c.from)
			before := dt.Head(t, env.Store)
			_, err := env.Distributions.Handle(ctx, dt.Meta(), c.cmd(id))
			dt.Refused(t, env.Store, before, err, c.want)
		})
	}
}

func TestMicroNicheNamesAreUnique(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, _ := create(t, env)
	do(t, env, distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "go for sres"})
	before := dt.Head(t, env.Store)
	_, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "go for sres"})
	dt.Refused(t, env.Store, before, err, distribution.ErrNicheExists)
}

// A niche id names one micro-niche of the distribution. Before, a second
// CreateMicroNiche with the id of an existing niche and another name was
// recorded: the stream then held two niches under one id. It is refused,
// typed, and nothing is written; the same id with the same name stays the
// niche-unique refusal of any second niche of a name.
func TestMicroNicheIDsAreUnique(t *testing.T) {
	t.Parallel()
	for _, b := range dt.Backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, b, domain.Options{})
			id, _ := create(t, env)
			niche := uuid.NewString()
			do(t, env, distribution.CreateMicroNiche{DistributionID: id, NicheID: niche, Niche: "go for sres"})
			for _, c := range []struct {
				name string
				want error
			}{{"go for data engineers", distribution.ErrNicheIDExists}, {"go for sres", distribution.ErrNicheExists}} {
				before := dt.Head(t, env.Store)
				_, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.CreateMicroNiche{DistributionID: id, NicheID: niche, Niche: c.name})
				var re *aggregates.RuleError
				if !errors.As(err, &re) {
					t.Fatalf("niche %q under a used id: error = %v, want a refusal", c.name, err)
				}
				dt.Refused(t, env.Store, before, err, c.want)
			}
			// Another id is still another niche.
			res := do(t, env, distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "go for data engineers"})
			if got, want := len(res.Aggregate.State.Niches), 2; got != want {
				t.Fatalf("%d niches, want %d", got, want)
			}
		})
	}
}

// Text that is not valid UTF-8 is refused, with nothing written: JSON
// stores U+FFFD for its bad bytes. Before, niches "go\xff" and "go\xfe"
// were both accepted, one after the other, and stored as one name,
// "go\ufffd", held by two niches; the title read back was not the one
// decided.
func TestInvalidUTF8TextIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, _ := create(t, env)
	for _, c := range []aggregates.Command[distribution.State]{
		distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "go\xff"},
		distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "go", Keywords: []string{"k\xfe"}},
		distribution.Update{DistributionID: id, Changes: distribution.Changes{Title: ptr("Go\xff")}},
		distribution.Update{DistributionID: id, Changes: distribution.Changes{Tags: &[]string{"go\xff"}}},
		distribution.Create{DistributionID: uuid.NewString(), CourseID: uuid.NewString(), Channel: distribution.ChannelWeb, Title: "Go\xff"},
	} {
		before := dt.Head(t, env.Store)
		_, err := env.Distributions.Handle(ctx, dt.Meta(), c)
		dt.Refused(t, env.Store, before, err, distribution.ErrTextEncoding)
	}
	// The second of two names that JSON would store as one is refused too.
	do(t, env, distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "go\ufffd"})
	before := dt.Head(t, env.Store)
	_, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "go\xfe"})
	dt.Refused(t, env.Store, before, err, distribution.ErrTextEncoding)
}

// The rest of a distribution's text is refused too when it is not valid
// UTF-8. Before, an Update of the description or staging URL to such text
// was recorded, and the same Update again was recorded a second time (the
// stored value, with U+FFFD, never matched it), so an update that changes
// nothing wrote events; a reason, visitor id or referrer was read back
// otherwise than decided.
func TestOtherInvalidUTF8TextIsRefused(t *testing.T) {
	t.Parallel()
	for _, b := range dt.Backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, b, domain.Options{})
			id, _ := create(t, env)
			pub, _ := create(t, env)
			do(t, env, distribution.Publish{DistributionID: pub})
			for _, c := range []aggregates.Command[distribution.State]{
				distribution.Update{DistributionID: id, Changes: distribution.Changes{Description: ptr("About Go\xff")}},
				distribution.Update{DistributionID: id, Changes: distribution.Changes{StagingURL: ptr("https://staging.example.com/\xff")}},
				distribution.Update{DistributionID: id, Changes: distribution.Changes{Currency: ptr("EU\xff")}},
				distribution.Delete{DistributionID: id, Reason: "retired\xff"},
				distribution.BumpVersion{DistributionID: id, Bump: distribution.Patch, Reason: "fix\xfe"},
				distribution.Unpublish{DistributionID: pub, Reason: "rework\xff"},
				distribution.RecordView{DistributionID: pub, VisitorID: "v\xff"},
				distribution.RecordView{DistributionID: pub, VisitorID: "v1", Referrer: "news\xfe"},
				distribution.RecordEnrollmentClick{DistributionID: pub, VisitorID: "v\xc3"},
			} {
				// Twice: before, the second Update was recorded again.
				for range 2 {
					before := dt.Head(t, env.Store)
					_, err := env.Distributions.Handle(ctx, dt.Meta(), c)
					var re *aggregates.RuleError
					if !errors.As(err, &re) || re.Rule != "text-utf8" {
						t.Fatalf("%+v: error = %v, want a text-utf8 refusal", c, err)
					}
					dt.Refused(t, env.Store, before, err, distribution.ErrTextEncoding)
				}
			}
		})
	}
}

func TestVersionBumpsFollowSemver(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	id, _ := create(t, env)
	for _, step := range []struct {
		bump distribution.Bump
		want string
	}{{distribution.Patch, "1.0.1"}, {distribution.Patch, "1.0.2"}, {distribution.Minor, "1.1.0"}, {distribution.Major, "2.0.0"}, {distribution.Patch, "2.0.1"}} {
		res := do(t, env, distribution.BumpVersion{DistributionID: id, Bump: step.bump})
		var ev distribution.VersionBumped
		_ = json.Unmarshal(res.Events[0].Payload, &ev)
		if ev.ToVersion != step.want || res.Aggregate.State.Version != step.want {
			t.Fatalf("%s bump gave %s (state %s), want %s", step.bump, ev.ToVersion, res.Aggregate.State.Version, step.want)
		}
	}
	for _, bad := range []string{"1", "1.0", "01.0.0", "1.0.0-rc1", "a.b.c", "1..0"} {
		if _, err := distribution.ParseSemver(bad); err == nil {
			t.Fatalf("ParseSemver(%q) accepted", bad)
		}
	}
}

func TestCreateAndUpdateAreIdempotent(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	course := uuid.NewString()
	id := distribution.IDForCourse(course, distribution.ChannelWeb)
	if id != distribution.IDForCourse(course, distribution.ChannelWeb) || id == distribution.IDForCourse(course, distribution.ChannelEmail) {
		t.Fatal("IDForCourse is not a function of course and channel")
	}
	c := distribution.Create{DistributionID: id, CourseID: course, Channel: distribution.ChannelWeb, Title: "T"}
	do(t, env, c)
	before := dt.Head(t, env.Store)
	if res := do(t, env, c); len(res.Events) != 0 || dt.Head(t, env.Store) != before {
		t.Fatal("a repeated create wrote events")
	}
	u := distribution.Update{DistributionID: id, Changes: distribution.Changes{StagingURL: ptr("https://staging.example.com/x")}}
	if res := do(t, env, u); len(res.Events) != 1 {
		t.Fatal("update wrote nothing")
	}
	if res := do(t, env, u); len(res.Events) != 0 {
		t.Fatal("a repeated update wrote events")
	}
	// Only the fields that change are recorded.
	res := do(t, env, distribution.Update{DistributionID: id, Changes: distribution.Changes{StagingURL: ptr("https://staging.example.com/x"), Title: ptr("T2")}})
	var ev distribution.Updated
	_ = json.Unmarshal(res.Events[0].Payload, &ev)
	if ev.Changes.StagingURL != nil || ev.Changes.Title == nil || *ev.Changes.Title != "T2" {
		t.Fatalf("update recorded %s, want only the title", res.Events[0].Payload)
	}
}

// A version number at the top of the range has no next version: the bump
// is refused by the semver rule, not handed to the store as a negative
// number. A version whose numbers do not fit at all is refused at
// creation, rather than created and never bumpable.
func TestVersionNumbersOutOfRange(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	for _, c := range []struct {
		version string
		bump    distribution.Bump
	}{
		{"9223372036854775807.0.0", distribution.Major},
		{"1.9223372036854775807.0", distribution.Minor},
		{"1.0.9223372036854775807", distribution.Patch},
	} {
		id := uuid.NewString()
		do(t, env, distribution.Create{DistributionID: id, CourseID: uuid.NewString(), Channel: distribution.ChannelWeb, Title: "x", Version: c.version})
		before := dt.Head(t, env.Store)
		_, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.BumpVersion{DistributionID: id, Bump: c.bump})
		dt.Refused(t, env.Store, before, err, distribution.ErrBadBump)
	}
	before := dt.Head(t, env.Store)
	id := uuid.NewString()
	_, err := env.Distributions.Handle(ctx, dt.Meta(), distribution.Create{DistributionID: id, CourseID: uuid.NewString(), Channel: distribution.ChannelWeb, Title: "x", Version: "99999999999999999999.0.0"})
	dt.Refused(t, env.Store, before, err, distribution.ErrBadVersion)
}

// Channels is the schema's enum of channels.
func TestChannelsMatchTheSchema(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../schemas/distribution.created/v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties struct {
			Channel struct {
				Enum []string `json:"enum"`
			} `json:"channel"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	got, want := slices.Sorted(slices.Values(distribution.Channels())), slices.Sorted(slices.Values(s.Properties.Channel.Enum))
	if !slices.Equal(got, want) {
		t.Fatalf("Channels() = %v, schema enum %v", got, want)
	}
}

// A title, tag, niche or keyword that shows nothing (only white space, or
// invisible characters) passes the schemas' minLength but names nothing:
// it is refused, typed, and nothing is written. (The channel is an enum of
// the schema: "  " is refused there.)
func TestBlankTextIsRefused(t *testing.T) {
	t.Parallel()
	env := dt.Memory(t, domain.Options{})
	for _, c := range []struct {
		name      string
		cmd       func(id string) aggregates.Command[distribution.State]
		want      error
		published bool
	}{
		{"create with a title of spaces", func(string) aggregates.Command[distribution.State] {
			return distribution.Create{DistributionID: uuid.NewString(), CourseID: uuid.NewString(), Channel: "web", Title: "   "}
		}, distribution.ErrBlank, false},
		{"create with a channel of spaces", func(string) aggregates.Command[distribution.State] {
			return distribution.Create{DistributionID: uuid.NewString(), CourseID: uuid.NewString(), Channel: "  ", Title: "Go"}
		}, distribution.ErrBlank, false},
		{"create with an empty channel", func(string) aggregates.Command[distribution.State] {
			return distribution.Create{DistributionID: uuid.NewString(), CourseID: uuid.NewString(), Title: "Go"}
		}, distribution.ErrBlank, false},
		{"create on an unknown channel", func(string) aggregates.Command[distribution.State] {
			return distribution.Create{DistributionID: uuid.NewString(), CourseID: uuid.NewString(), Channel: "fax", Title: "Go"}
		}, distribution.ErrUnknownChannel, false},
		{"delete with a reason of spaces", func(id string) aggregates.Command[distribution.State] {
			return distribution.Delete{DistributionID: id, Reason: "   "}
		}, distribution.ErrBlank, false},
		{"unpublish with a reason of a zero-width space", func(id string) aggregates.Command[distribution.State] {
			return distribution.Unpublish{DistributionID: id, Reason: "\u200b"}
		}, distribution.ErrBlank, true},
		{"version bump with a reason of a tab", func(id string) aggregates.Command[distribution.State] {
			return distribution.BumpVersion{DistributionID: id, Bump: distribution.Patch, Reason: "\t"}
		}, distribution.ErrBlank, false},
		{"update to a title of a zero-width space", func(id string) aggregates.Command[distribution.State] {
			return distribution.Update{DistributionID: id, Changes: distribution.Changes{Title: ptr("\u200b")}}
		}, distribution.ErrBlank, false},
		{"update with a blank tag", func(id string) aggregates.Command[distribution.State] {
			return distribution.Update{DistributionID: id, Changes: distribution.Changes{Tags: &[]string{"go", " \t"}}}
		}, distribution.ErrBlank, false},
		{"micro-niche of spaces", func(id string) aggregates.Command[distribution.State] {
			return distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "  "}
		}, distribution.ErrBlank, false},
		{"micro-niche with a blank keyword", func(id string) aggregates.Command[distribution.State] {
			return distribution.CreateMicroNiche{DistributionID: id, NicheID: uuid.NewString(), Niche: "sres", Keywords: []string{"\u00a0"}}
		}, distribution.ErrBlank, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, _ := create(t, env)
			if c.published {
				do(t, env, distribution.Publish{DistributionID: id})
			}
			before := dt.Head(t, env.Store)
			_, err := env.Distributions.Handle(ctx, dt.Meta(), c.cmd(id))
			dt.Refused(t, env.Store, before, err, c.want)
		})
	}
	// A reason is optional: none is still accepted.
	id, _ := create(t, env)
	do(t, env, distribution.BumpVersion{DistributionID: id, Bump: distribution.Patch})
	do(t, env, distribution.Delete{DistributionID: id})
}

// A command id is no secret a tenant keeps: another tenant sending a
// command with the id of one that landed on a distribution is refused with
// distribution-tenant, as any other tenant's command is, and learns
// nothing of it. Before, the landed-command check answered it with
// ErrCommandReused, naming the version where the command landed, and the
// distribution as loaded (its tenant, course, title, status).
func TestAnotherTenantReusingALandedCommandIDLearnsNothing(t *testing.T) {
	t.Parallel()
	for _, backend := range dt.Backends {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			env := dt.OnBackend(t, backend, domain.Options{})
			id, course := uuid.NewString(), uuid.NewString()
			first, second := dt.Meta(), dt.Meta()
			first.ID, second.ID = uuid.New(), uuid.New()
			create := distribution.Create{DistributionID: id, CourseID: course, Channel: distribution.ChannelWeb, Title: "Secret title"}
			if _, err := env.Distributions.Handle(ctx, first, create); err != nil {
				t.Fatal(err)
			}
			if _, err := env.Distributions.Handle(ctx, second, distribution.Publish{DistributionID: id}); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				id  uuid.UUID
				cmd aggregates.Command[distribution.State]
			}{
				{first.ID, create},
				{first.ID, distribution.Publish{DistributionID: id}},
				{second.ID, distribution.Publish{DistributionID: id}},
				{second.ID, distribution.RecordView{DistributionID: id, VisitorID: "v2"}},
			} {
				before := dt.Head(t, env.Store)
				res, err := env.Distributions.Handle(ctx, aggregates.CommandMeta{TenantID: "t2", ID: c.id}, c.cmd)
				dt.Refused(t, env.Store, before, err, distribution.ErrTenant)
				if errors.Is(err, aggregates.ErrCommandReused) || res.Aggregate != nil || len(res.Events) != 0 ||
					strings.Contains(err.Error(), "Secret") || strings.Contains(err.Error(), course) || strings.Contains(err.Error(), " at v") {
					t.Fatalf("%T: the refusal tells another tenant about the distribution: %v, %+v", c.cmd, err, res.Aggregate)
				}
			}
			// The distribution's own tenant retrying its Publish still
			// gets its result.
			res, err := env.Distributions.Handle(ctx, second, distribution.Publish{DistributionID: id})
			if err != nil || len(res.Events) != 1 || res.Events[0].Type != distribution.TypePublished {
				t.Fatalf("the retried Publish: %v, %v", err, res.Events)
			}
		})
	}
}
