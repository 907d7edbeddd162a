// Package catalog is the course-catalog read model: one row per course in
// course_catalog (workflow state, lesson count and lessons generated,
// distribution and publication status, views and enrollment clicks), and
// one row per distribution in course_distributions, which the catalog's
// distribution figures are summed from.
//
// It shows what the modules decided: a course or distribution event is
// applied only in the stream of the aggregate its payload names
// (course-<course_id>, distribution-<distribution_id>), the only streams
// the modules write and the API lets no one else append to. The same
// types appended raw anywhere else are not applied: they are counted per
// tenant, stream and type in catalog_skipped_events and the first of each
// is logged (see ownStream and skip).
//
// Every statement is an upsert keyed by tenant and id, so an event about
// a course or distribution the catalog has not seen yet (a course created
// before the projection's first event, say) still lands. The workflow
// state, a course's quiz, landing page, completion, failure and staging
// URL, and a distribution's publication, version, title, price, currency
// and staging URL are guarded by the position of the event that set them
// (each field a distribution.updated names on its own), so a late event
// (a parked one retried) never moves them back; an event of an earlier
// attempt of a course, by the position of the current attempt's request,
// so it changes nothing the later attempt set; and a request clears only what events earlier than
// itself set (lessons_generated keeps the positions of the lessons it
// counts), so the request of the current attempt, applied late, keeps
// that attempt's results.
package catalog

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/aggregates"
	"github.com/brainhq/eventstream/aggregates/coursefactory"
	"github.com/brainhq/eventstream/aggregates/distribution"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// Name is the projection's name.
const Name = "catalog"

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// Handles lists the event types the catalog applies.
var Handles = append(append(
	[]projections.EventType{{Type: "course.generation.requested", Versions: []int{1, 2}}},
	projections.Types(1,
		"course.outline.created", "course.lesson.generated", "course.quiz.created", "course.landing_page.created",
		"course.generation.completed", "course.generation.failed", "course.workflow.transitioned", "course.deployed.staging",
	)...),
	projections.Types(1,
		"distribution.created", "distribution.updated", "distribution.deleted", "distribution.published",
		"distribution.unpublished", "distribution.viewed", "distribution.enrollment_clicked",
		"distribution.micro_niche_created", "distribution.version_bumped",
	)...)

// Projection returns the course-catalog projection.
func Projection() projections.Projection {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	return projections.Projection{
		Name:       Name,
		Handles:    slices.Clone(Handles),
		Migrations: sub,
		Handler:    projections.HandlerFunc(handle),
	}
}

// payload holds the fields of every handled type the catalog reads. Its
// schema integers are projections.Integer: a valid event may write 12 as
// 12.0 or 1.2e1, which an int refuses.
type payload struct {
	CourseID       string              `json:"course_id"`
	DistributionID string              `json:"distribution_id"`
	Topic          string              `json:"topic"`
	Language       string              `json:"language"`
	Attempt        projections.Integer `json:"attempt"`
	Title          string              `json:"title"`
	LessonCount    projections.Integer `json:"lesson_count"`
	Lessons        []json.RawMessage   `json:"lessons"`
	QuestionCount  projections.Integer `json:"question_count"`
	Slug           string              `json:"slug"`
	Stage          string              `json:"stage"`
	Reason         string              `json:"reason"`
	To             string              `json:"to"`
	StagingURL     string              `json:"staging_url"`
	Channel        string              `json:"channel"`
	Version        string              `json:"version"`
	ToVersion      string              `json:"to_version"`
	Changes        struct {
		Title      *string              `json:"title"`
		PriceCents *projections.Integer `json:"price_cents"`
		Currency   *string              `json:"currency"`
		StagingURL *string              `json:"staging_url"`
	} `json:"changes"`
}

type courseKey struct{ tenant, course string }

type distKey struct{ tenant, dist string }

// counter sums a batch's views and clicks of one distribution, with the
// latest time among them. updated_at is the greatest timestamp of the
// row's own events, whatever the batch: taking another distribution's
// time, or the last event's rather than the latest (a log's order is its
// commit order, not its clock's), would make a rebuild, which applies
// large batches, differ from the live model.
type counter struct {
	views, clicks int64
	at            time.Time
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// handle queues the batch's statements in order, sums views and clicks
// per distribution, recomputes the distribution figures of the courses
// touched, and sends it all in one round trip.
func handle(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	b := &pgx.Batch{}
	touched := map[courseKey]time.Time{}
	// The distributions the batch writes: the figures of the course each
	// row belongs to are recomputed too (see summary).
	written := map[distKey]bool{}
	counters := map[distKey]*counter{}
	courseOf := map[distKey]string{}
	var order []distKey
	for _, e := range events {
		var p payload
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			return projections.Permanent(fmt.Errorf("catalog: decode %s %s: %w", e.Type, e.ID, err))
		}
		if want, ok := ownStream(e.Type, p); ok && e.Stream != want {
			// No module decided it: counted, not applied (see skip).
			b.Queue(skip, e.Meta.TenantID, e.Stream, e.Type, e.ID, int64(e.Position.Commit), int64(e.Position.Prepare), e.Timestamp).
				QueryRow(func(row pgx.Row) error {
					var n int64
					if err := row.Scan(&n); err != nil {
						return err
					}
					if n == 1 {
						logSkipped(ctx, e, want)
					}
					return nil
				})
			continue
		}
		t, ts := e.Meta.TenantID, e.Timestamp
		pos, prep := int64(e.Position.Commit), int64(e.Position.Prepare)
		course := func(sql string, args ...any) {
			b.Queue(sql, append([]any{t, p.CourseID, ts}, args...)...)
		}
		dist := func(sql string, args ...any) {
			b.Queue(sql, append([]any{t, p.DistributionID, p.CourseID, ts}, args...)...)
			touched[courseKey{t, p.CourseID}] = latest(touched[courseKey{t, p.CourseID}], ts)
			written[distKey{t, p.DistributionID}] = true
		}
		switch e.Type {
		case "course.generation.requested":
			if e.Meta.SchemaVersion == 1 {
				// v1 has no language: its courses are in the language v2
				// defaults to, as the upcaster reads them, so a runtime
				// without Config.Upcast shows the same row.
				p.Language = coursefactory.DefaultLanguage
			}
			course(requested, p.Topic, nullable(p.Language), int64(p.Attempt), pos, prep)
		case "course.outline.created":
			course(`INSERT INTO course_catalog AS t (tenant_id, course_id, updated_at, title, lesson_count) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (tenant_id, course_id) DO UPDATE SET
					title = CASE WHEN `+inAttempt(6)+` THEN excluded.title ELSE t.title END,
					lesson_count = CASE WHEN `+inAttempt(6)+` THEN excluded.lesson_count ELSE t.lesson_count END, `+touch,
				p.Title, len(p.Lessons), pos, prep)
		case "course.lesson.generated":
			course(`INSERT INTO course_catalog AS t (tenant_id, course_id, updated_at, lessons_generated, lesson_positions, lesson_prepare_positions)
				VALUES ($1, $2, $3, 1, ARRAY[$4::bigint], ARRAY[$5::bigint])
				ON CONFLICT (tenant_id, course_id) DO UPDATE SET
					lessons_generated = CASE WHEN `+inAttempt(4)+` THEN t.lessons_generated + 1 ELSE t.lessons_generated END,
					lesson_positions = CASE WHEN `+inAttempt(4)+` THEN `+lessonPositions("c", "true", true)+` ELSE t.lesson_positions END,
					lesson_prepare_positions = CASE WHEN `+inAttempt(4)+` THEN `+lessonPositions("p", "true", true)+` ELSE t.lesson_prepare_positions END, `+touch,
				pos, prep)
		case "course.quiz.created":
			course(`INSERT INTO course_catalog AS t (tenant_id, course_id, updated_at, quiz_questions, quiz_position, quiz_prepare_position)
				VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (tenant_id, course_id) DO UPDATE SET `+fromLatestIf(inAttempt(5), "quiz", "quiz_questions")+`, `+touch,
				int64(p.QuestionCount), pos, prep)
		case "course.landing_page.created":
			course(`INSERT INTO course_catalog AS t (tenant_id, course_id, updated_at, landing_page_slug, landing_position, landing_prepare_position)
				VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (tenant_id, course_id) DO UPDATE SET `+fromLatestIf(inAttempt(5), "landing", "landing_page_slug")+`, `+touch,
				p.Slug, pos, prep)
		case "course.generation.completed":
			course(`INSERT INTO course_catalog AS t (tenant_id, course_id, updated_at, title, lesson_count, completed_at,
					workflow_state, state_position, state_prepare_position, completion_position, completion_prepare_position)
				VALUES ($1, $2, $3, $4, $5, $3, 'completed', $6, $7, $6, $7)
				ON CONFLICT (tenant_id, course_id) DO UPDATE SET
					title = CASE WHEN $8 >= t.attempt THEN excluded.title ELSE t.title END,
					lesson_count = CASE WHEN $8 >= t.attempt THEN excluded.lesson_count ELSE t.lesson_count END,
					`+fromLatestIf("$8 >= t.attempt", "completion", "completed_at")+`,
					`+touch+`, `+stateGuard, p.Title, int64(p.LessonCount), pos, prep, int64(p.Attempt))
		case "course.generation.failed":
			course(`INSERT INTO course_catalog AS t (tenant_id, course_id, updated_at, failure_stage, failure_reason, failed_at,
					workflow_state, state_position, state_prepare_position, failure_position, failure_prepare_position)
				VALUES ($1, $2, $3, $4, $5, $3, 'failed', $6, $7, $6, $7)
				ON CONFLICT (tenant_id, course_id) DO UPDATE SET
					`+fromLatestIf("$8 >= t.attempt", "failure", "failure_stage", "failure_reason", "failed_at")+`,
					`+touch+`, `+stateGuard,
				p.Stage, p.Reason, pos, prep, int64(p.Attempt))
		case "course.workflow.transitioned":
			course(`INSERT INTO course_catalog AS t (tenant_id, course_id, updated_at, workflow_state, state_position, state_prepare_position)
				VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (tenant_id, course_id) DO UPDATE SET `+touch+`, `+stateGuard, p.To, pos, prep)
		case "course.deployed.staging":
			course(`INSERT INTO course_catalog AS t (tenant_id, course_id, updated_at, staging_url, deployed_at,
					workflow_state, state_position, state_prepare_position, deploy_position, deploy_prepare_position)
				VALUES ($1, $2, $3, $4, $3, 'deployed', $5, $6, $5, $6)
				ON CONFLICT (tenant_id, course_id) DO UPDATE SET `+setDeployed+`, `+touch+`, `+stateGuard, p.StagingURL, pos, prep)
			dist(`INSERT INTO course_distributions AS t (tenant_id, distribution_id, course_id, updated_at, staging_url,
					staging_position, staging_prepare_position)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (tenant_id, distribution_id) DO UPDATE SET `+setStaging+`, `+touch, p.StagingURL, pos, prep)
		case "distribution.created":
			dist(`INSERT INTO course_distributions AS t (tenant_id, distribution_id, course_id, updated_at, channel, title, version, created_at,
					version_position, version_prepare_position, title_position, title_prepare_position)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $4, $8, $9, $8, $9)
				ON CONFLICT (tenant_id, distribution_id) DO UPDATE SET channel = excluded.channel,
					created_at = excluded.created_at, `+setTitle+`, `+setVersion+`, `+touch, p.Channel, p.Title, p.Version, pos, prep)
		case "distribution.updated":
			// An update names only the fields that changed: the others keep
			// position 0, which no event is later than, so they are left alone.
			c := p.Changes
			args := []any{c.Title, (*int64)(c.PriceCents), c.Currency, c.StagingURL}
			for _, changed := range []bool{c.Title != nil, c.PriceCents != nil, c.Currency != nil, c.StagingURL != nil} {
				if changed {
					args = append(args, pos, prep)
				} else {
					args = append(args, int64(0), int64(0))
				}
			}
			dist(`INSERT INTO course_distributions AS t (tenant_id, distribution_id, course_id, updated_at, title, price_cents, currency, staging_url,
					title_position, title_prepare_position, price_position, price_prepare_position,
					currency_position, currency_prepare_position, staging_position, staging_prepare_position)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
				ON CONFLICT (tenant_id, distribution_id) DO UPDATE SET `+setTitle+`, `+setPrice+`, `+setCurrency+`, `+setStaging+`, `+touch,
				args...)
		case "distribution.deleted":
			dist(`INSERT INTO course_distributions AS t (tenant_id, distribution_id, course_id, updated_at, status, published,
					publication_position, publication_prepare_position)
				VALUES ($1, $2, $3, $4, 'deleted', false, $5, $6)
				ON CONFLICT (tenant_id, distribution_id) DO UPDATE SET status = 'deleted', `+setPublished+`, `+touch, pos, prep)
		case "distribution.published":
			dist(`INSERT INTO course_distributions AS t (tenant_id, distribution_id, course_id, updated_at, published, published_at, version,
					publication_position, publication_prepare_position, publish_position, publish_prepare_position,
					version_position, version_prepare_position)
				VALUES ($1, $2, $3, $4, true, $4, $5, $6, $7, $6, $7, $6, $7)
				ON CONFLICT (tenant_id, distribution_id) DO UPDATE SET `+setPublished+`,
					`+setPublishedAt+`, `+setVersion+`, `+touch, p.Version, pos, prep)
		case "distribution.unpublished":
			dist(`INSERT INTO course_distributions AS t (tenant_id, distribution_id, course_id, updated_at, published,
					publication_position, publication_prepare_position)
				VALUES ($1, $2, $3, $4, false, $5, $6)
				ON CONFLICT (tenant_id, distribution_id) DO UPDATE SET `+setPublished+`, `+touch, pos, prep)
		case "distribution.micro_niche_created":
			dist(`INSERT INTO course_distributions AS t (tenant_id, distribution_id, course_id, updated_at, micro_niches) VALUES ($1, $2, $3, $4, 1)
				ON CONFLICT (tenant_id, distribution_id) DO UPDATE SET micro_niches = t.micro_niches + 1, ` + touch)
		case "distribution.version_bumped":
			dist(`INSERT INTO course_distributions AS t (tenant_id, distribution_id, course_id, updated_at, version,
					version_position, version_prepare_position)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (tenant_id, distribution_id) DO UPDATE SET `+setVersion+`, `+touch, p.ToVersion, pos, prep)
		case "distribution.viewed", "distribution.enrollment_clicked":
			k := distKey{t, p.DistributionID}
			if counters[k] == nil {
				counters[k] = &counter{}
				courseOf[k] = p.CourseID
				order = append(order, k)
			}
			if e.Type == "distribution.viewed" {
				counters[k].views++
			} else {
				counters[k].clicks++
			}
			counters[k].at = latest(counters[k].at, ts)
			written[k] = true
			touched[courseKey{t, p.CourseID}] = latest(touched[courseKey{t, p.CourseID}], ts)
		default:
			return projections.Permanent(fmt.Errorf("catalog: unexpected event type %q", e.Type))
		}
	}
	if len(order) > 0 {
		// Sorted, so that concurrent writers lock rows in one order.
		slices.SortFunc(order, func(a, b distKey) int {
			return strings.Compare(a.tenant+"\x00"+a.dist, b.tenant+"\x00"+b.dist)
		})
		var tenants, dists, courses []string
		var views, clicks []int64
		var stamps []time.Time
		for _, k := range order {
			tenants, dists, courses = append(tenants, k.tenant), append(dists, k.dist), append(courses, courseOf[k])
			views, clicks = append(views, counters[k].views), append(clicks, counters[k].clicks)
			stamps = append(stamps, counters[k].at)
		}
		b.Queue(`INSERT INTO course_distributions AS t (tenant_id, distribution_id, course_id, views, enrollment_clicks, updated_at)
			SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::bigint[], $5::bigint[], $6::timestamptz[])
			ON CONFLICT (tenant_id, distribution_id) DO UPDATE SET views = t.views + excluded.views,
				enrollment_clicks = t.enrollment_clicks + excluded.enrollment_clicks, `+touch,
			tenants, dists, courses, views, clicks, stamps)
	}
	if len(touched) > 0 {
		keys := make([]courseKey, 0, len(touched))
		for k := range touched {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b courseKey) int {
			return strings.Compare(a.tenant+"\x00"+a.course, b.tenant+"\x00"+b.course)
		})
		var tenants, courses []string
		var stamps []time.Time
		for _, k := range keys {
			tenants, courses, stamps = append(tenants, k.tenant), append(courses, k.course), append(stamps, touched[k])
		}
		b.Queue(`INSERT INTO course_catalog AS t (tenant_id, course_id, updated_at)
			SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[])
			ON CONFLICT (tenant_id, course_id) DO UPDATE SET `+touch, tenants, courses, stamps)
		dists := make([]distKey, 0, len(written))
		for k := range written {
			dists = append(dists, k)
		}
		slices.SortFunc(dists, func(a, b distKey) int {
			return strings.Compare(a.tenant+"\x00"+a.dist, b.tenant+"\x00"+b.dist)
		})
		var distTenants, distIDs []string
		for _, k := range dists {
			distTenants, distIDs = append(distTenants, k.tenant), append(distIDs, k.dist)
		}
		b.Queue(summary, tenants, courses, distTenants, distIDs)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// inAttempt is true for an event (its position in $n and $n+1) later in
// the log than the request of the course's current attempt: the outline,
// lessons, quiz and landing page of an earlier attempt (a parked event
// retried late) change nothing the current attempt has, or lacks. The
// events of a course are in its stream's order, so its position tells
// which attempt an event belongs to.
func inAttempt(n int) string {
	return fmt.Sprintf(`($%d::bigint, $%d::bigint) > (t.attempt_position, t.attempt_prepare_position)`, n, n+1)
}

// fromLatest sets a group of columns from the row's latest event in the
// log that sets them, whatever order the events are applied in (a parked
// event retried after later ones). A distribution's groups are its
// published flag ("publication": published, unpublished, deleted), the
// time of its last publication ("publish"), its version ("version":
// created, published, bumped), its title ("title": created, updated),
// price ("price"), currency ("currency") and staging URL ("staging":
// updated, course deployed to staging); a course's, its staging URL and
// deployment time ("deploy"), and its quiz ("quiz"), landing page
// ("landing"), completion time ("completion") and failure ("failure"),
// which a request of a new attempt also sets, to nothing (see
// requested). Each group has its event's position in <group>_position and
// <group>_prepare_position, which the statement inserts; an event that
// does not set the group inserts 0, which is never later.
func fromLatest(group string, columns ...string) string {
	return fromLatestIf("true", group, columns...)
}

// fromEarliest is fromLatest the other way: the columns of the group keep
// the values of the earliest event in the log that set them.
func fromEarliest(group string, columns ...string) string {
	earlier := fmt.Sprintf(`(excluded.%[1]s_position, excluded.%[1]s_prepare_position) < (t.%[1]s_position, t.%[1]s_prepare_position)`, group)
	var set []string
	for _, c := range append(columns, group+"_position", group+"_prepare_position") {
		set = append(set, fmt.Sprintf(`%[1]s = CASE WHEN %[2]s THEN excluded.%[1]s ELSE t.%[1]s END`, c, earlier))
	}
	return strings.Join(set, ",\n\t")
}

// fromLatestIf is fromLatest for an event that sets the group only when
// the condition when holds as well.
func fromLatestIf(when, group string, columns ...string) string {
	later := fmt.Sprintf(`(%[1]s) AND (excluded.%[2]s_position, excluded.%[2]s_prepare_position) > (t.%[2]s_position, t.%[2]s_prepare_position)`,
		when, group)
	var set []string
	for _, c := range append(columns, group+"_position", group+"_prepare_position") {
		set = append(set, fmt.Sprintf(`%[1]s = CASE WHEN %[2]s THEN excluded.%[1]s ELSE t.%[1]s END`, c, later))
	}
	return strings.Join(set, ",\n\t")
}

// clearedBefore is what a request of a new attempt (excluded.attempt >
// t.attempt) does to a group of fromLatest: it clears the columns and
// takes the request's position unless an event later than the request set
// them. Applied in order, that is every event of the group (all of the
// earlier attempts); applied late, after the attempt's own events, those
// are kept.
func clearedBefore(group string, columns ...string) string {
	earlier := fmt.Sprintf(`excluded.attempt > t.attempt
		AND (t.%[1]s_position, t.%[1]s_prepare_position) < (excluded.attempt_position, excluded.attempt_prepare_position)`, group)
	var set []string
	for _, c := range columns {
		set = append(set, fmt.Sprintf(`%[1]s = CASE WHEN %[2]s THEN NULL ELSE t.%[1]s END`, c, earlier))
	}
	for _, c := range []string{"_position", "_prepare_position"} {
		set = append(set, fmt.Sprintf(`%[1]s%[2]s = CASE WHEN %[3]s THEN excluded.attempt%[2]s ELSE t.%[1]s%[2]s END`, group, c, earlier))
	}
	return strings.Join(set, ",\n\t\t")
}

// lessonPositions is the sorted array of the commit ("c") or prepare ("p")
// positions of the lessons counted in lessons_generated, with the event's
// own (excluded's) added when add is set, keeping only those for which
// where holds. Sorted, so that the row does not depend on the order the
// lessons were applied in.
func lessonPositions(which, where string, add bool) string {
	c, p := "t.lesson_positions", "t.lesson_prepare_positions"
	if add {
		c, p = c+" || excluded.lesson_positions", p+" || excluded.lesson_prepare_positions"
	}
	return fmt.Sprintf(`ARRAY(SELECT l.%s FROM unnest(%s, %s) AS l(c, p) WHERE %s ORDER BY l.c, l.p)`, which, c, p, where)
}

// laterLessons holds for a lesson later in the log than the request being
// applied.
const laterLessons = `(l.c, l.p) > (excluded.attempt_position, excluded.attempt_prepare_position)`

var (
	setPublished   = fromLatest("publication", "published")
	setPublishedAt = fromLatest("publish", "published_at")
	setVersion     = fromLatest("version", "version")
	setTitle       = fromLatest("title", "title")
	setPrice       = fromLatest("price", "price_cents")
	setCurrency    = fromLatest("currency", "currency")
	setStaging     = fromLatest("staging", "staging_url")
	setDeployed    = fromLatest("deploy", "staging_url", "deployed_at")

	clearedQuiz       = clearedBefore("quiz", "quiz_questions")
	clearedLanding    = clearedBefore("landing", "landing_page_slug")
	clearedFailure    = clearedBefore("failure", "failure_stage", "failure_reason", "failed_at")
	clearedCompletion = clearedBefore("completion", "completed_at")

	lessonPositionsLater        = lessonPositions("c", laterLessons, false)
	lessonPreparePositionsLater = lessonPositions("p", laterLessons, false)
)

// ownStream is the stream an event of type typ with payload p must be in
// to be applied: the stream of the course or distribution its payload
// names, as the module's repository names it (aggregates.StreamPrefix of
// the aggregate's name, then its id; the reactions' reaction-own-stream
// rule checks the same). The modules append their events only there, and
// the API refuses raw appends into those streams, so an event anywhere
// else (a producer's own stream, another course's or distribution's) is
// one a tenant appended raw: the catalog shows what the modules decided,
// not that. ok is false for a type of neither aggregate. Analytics
// counts outcomes by the same rule (analytics.OwnStream, which also
// covers the ir, approval and mission streams);
// TestAnalyticsAndCatalogAgreeOnModuleStreams checks the two agree.
func ownStream(typ string, p payload) (stream string, ok bool) {
	switch {
	case strings.HasPrefix(typ, "course."):
		return aggregates.StreamPrefix(coursefactory.AggregateName) + p.CourseID, true
	case strings.HasPrefix(typ, "distribution."):
		return aggregates.StreamPrefix(distribution.AggregateName) + p.DistributionID, true
	}
	return "", false
}

// skip counts an event outside its aggregate's stream in
// catalog_skipped_events, one row per tenant, stream and type, with the
// first and last such event in log order (by position, so a parked event
// retried late, a rebuild's large batches and live single events give the
// same row). The event is not applied, and not parked: no retry would
// make it one the module decided, and a producer doing it in a loop would
// fill the dead-letter table. The audit log records it like any event.
var skip = `INSERT INTO catalog_skipped_events AS t (tenant_id, stream, event_type, events,
		first_event_id, first_position, first_prepare_position, first_at,
		last_event_id, last_position, last_prepare_position, last_at)
	VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $4, $5, $6, $7)
	ON CONFLICT (tenant_id, stream, event_type) DO UPDATE SET events = t.events + 1,
	` + fromEarliest("first", "first_event_id", "first_at") + `,
	` + fromLatest("last", "last_event_id", "last_at") + `
	RETURNING events`

// logSkipped warns of the first event of a type skipped in a stream
// (catalog_skipped_events counts the rest, so a producer doing it in a
// loop does not flood the log). A rebuild, which fills a new generation,
// warns again once per row.
func logSkipped(ctx context.Context, e eventstore.Event, want string) {
	projections.Logger(ctx).Warn("catalog: event not applied: it is not in its aggregate's stream, so no module decided it (appended raw); "+
		"later ones of its type in that stream are counted in catalog_skipped_events",
		"tenant", e.Meta.TenantID, "stream", e.Stream, "type", e.Type, "event_id", e.ID, "position", e.Position.String(), "want_stream", want)
}

// touch keeps updated_at at the time of the latest event applied.
const touch = `updated_at = greatest(t.updated_at, excluded.updated_at)`

// stateGuard sets the workflow state only from an event later in the log
// than the one that set it.
const stateGuard = `workflow_state = CASE WHEN (excluded.state_position, excluded.state_prepare_position) > (t.state_position, t.state_prepare_position)
		THEN excluded.workflow_state ELSE t.workflow_state END,
	state_prepare_position = CASE WHEN (excluded.state_position, excluded.state_prepare_position) > (t.state_position, t.state_prepare_position)
		THEN excluded.state_prepare_position ELSE t.state_prepare_position END,
	state_position = CASE WHEN (excluded.state_position, excluded.state_prepare_position) > (t.state_position, t.state_prepare_position)
		THEN excluded.state_position ELSE t.state_position END`

// requested starts an attempt: a later attempt clears what the previous
// one produced, and an earlier one (a parked event retried late) changes
// nothing the later one set. Completions and failures are likewise
// applied only from the current attempt or a later one. What the request
// clears is what events earlier in the log than itself set: applied late,
// after its attempt's own lessons, quiz, landing page, completion or
// failure, it keeps them (and counts only the lessons later than itself).
var requested = `INSERT INTO course_catalog AS t (tenant_id, course_id, updated_at, topic, language, attempt, requested_at,
		workflow_state, state_position, state_prepare_position, attempt_position, attempt_prepare_position,
		quiz_position, quiz_prepare_position, landing_position, landing_prepare_position,
		completion_position, completion_prepare_position, failure_position, failure_prepare_position)
	VALUES ($1, $2, $3, $4, $5, $6, $3, 'requested', $7, $8, $7, $8, $7, $8, $7, $8, $7, $8, $7, $8)
	ON CONFLICT (tenant_id, course_id) DO UPDATE SET
		topic = CASE WHEN excluded.attempt >= t.attempt THEN excluded.topic ELSE t.topic END,
		attempt_prepare_position = CASE WHEN excluded.attempt >= t.attempt THEN excluded.attempt_prepare_position ELSE t.attempt_prepare_position END,
		attempt_position = CASE WHEN excluded.attempt >= t.attempt THEN excluded.attempt_position ELSE t.attempt_position END,
		language = CASE WHEN excluded.attempt >= t.attempt THEN coalesce(excluded.language, t.language) ELSE t.language END,
		attempt = greatest(t.attempt, excluded.attempt),
		requested_at = CASE WHEN excluded.attempt >= t.attempt THEN excluded.requested_at ELSE t.requested_at END,
		lessons_generated = CASE WHEN excluded.attempt > t.attempt
			THEN (SELECT count(*) FROM unnest(t.lesson_positions, t.lesson_prepare_positions) AS l(c, p) WHERE ` + laterLessons + `)::integer
			ELSE t.lessons_generated END,
		lesson_positions = CASE WHEN excluded.attempt > t.attempt THEN ` + lessonPositionsLater + ` ELSE t.lesson_positions END,
		lesson_prepare_positions = CASE WHEN excluded.attempt > t.attempt THEN ` + lessonPreparePositionsLater + ` ELSE t.lesson_prepare_positions END,
		` + clearedQuiz + `,
		` + clearedLanding + `,
		` + clearedFailure + `,
		` + clearedCompletion + `,
		` + touch + `, ` + stateGuard

// summary recomputes from course_distributions the distribution figures
// of the given courses ($1, $2: the courses the batch's events name) and
// of the courses the given distributions belong to ($3, $4: the rows the
// batch wrote). A row keeps the course of the event that made it, which
// need not be the course a later event of it names (a course deployed to
// staging for a distribution created afterwards for another course):
// recomputing only the courses the events name left that row's course
// with the figures of the last batch that named it, so a live runner,
// applying one event at a time, showed other figures than a rebuild,
// whose larger batches happened to name it after the row's later events.
const summary = `WITH k AS (
		SELECT * FROM unnest($1::text[], $2::uuid[]) AS k(tenant_id, course_id)
		UNION
		SELECT d.tenant_id, d.course_id FROM course_distributions d
		JOIN unnest($3::text[], $4::uuid[]) AS w(tenant_id, distribution_id)
			ON d.tenant_id = w.tenant_id AND d.distribution_id = w.distribution_id
	)
	UPDATE course_catalog c SET
		distribution_count = s.active,
		distribution_status = CASE WHEN s.total = 0 THEN 'none' WHEN s.active > 0 THEN 'active' ELSE 'deleted' END,
		publication_status = CASE WHEN s.published > 0 THEN 'published' ELSE 'unpublished' END,
		published_version = s.published_version,
		views = s.views,
		enrollment_clicks = s.clicks
	FROM (
		SELECT d.tenant_id, d.course_id,
			count(*) AS total,
			count(*) FILTER (WHERE d.status = 'active') AS active,
			count(*) FILTER (WHERE d.status = 'active' AND d.published) AS published,
			(array_agg(d.version ORDER BY d.published_at DESC NULLS LAST, d.distribution_id)
				FILTER (WHERE d.status = 'active' AND d.published))[1] AS published_version,
			sum(d.views) AS views,
			sum(d.enrollment_clicks) AS clicks
		FROM course_distributions d
		JOIN k ON d.tenant_id = k.tenant_id AND d.course_id = k.course_id
		GROUP BY d.tenant_id, d.course_id
	) s
	WHERE c.tenant_id = s.tenant_id AND c.course_id = s.course_id`

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
