// Package analytics is the analytics read model: event counts per type,
// tenant and day (analytics_event_counts); created / completed / failed
// counts per subject for every *_created, *_completed and *_failed type
// (analytics_outcomes); and course generation requested / completed /
// failed with the success rate per day (analytics_generation_daily).
// The event counts are of every event, whatever its stream; the two
// outcome tables count an event of a module's type only in the stream of
// the aggregate its payload names (see OwnStream), so that a tenant
// appending, say, course.generation.completed raw into a stream of its
// own does not raise its success rate. Days are UTC days of the events'
// timestamps, so the model is a pure function of the log and a rebuild
// gives the same rows.
package analytics

import (
	"cmp"
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
	"github.com/brainhq/eventstream/aggregates/governance"
	"github.com/brainhq/eventstream/aggregates/missions"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// Name is the projection's name.
const Name = "analytics"

// The course generation events the success rate is computed from.
const (
	GenerationRequested = "course.generation.requested"
	GenerationCompleted = "course.generation.completed"
	GenerationFailed    = "course.generation.failed"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// Projection returns the analytics projection. It counts every event, so
// it takes them as stored (no upcasting needed).
func Projection() projections.Projection {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded folder is part of the binary
	}
	return projections.Projection{
		Name:       Name,
		AllTypes:   true,
		Raw:        true,
		Migrations: sub,
		Handler:    projections.HandlerFunc(handle),
	}
}

// Outcome splits a type into its subject and outcome when it ends in
// created, completed or failed after a dot or an underscore.
func Outcome(typ string) (subject, outcome string, ok bool) {
	for _, o := range []string{"created", "completed", "failed"} {
		for _, sep := range []string{".", "_"} {
			if s, found := strings.CutSuffix(typ, sep+o); found && s != "" {
				return s, o, true
			}
		}
	}
	return "", "", false
}

// aggregateIDs are the payload fields that name the aggregate of a
// module's event.
type aggregateIDs struct {
	CourseID       string `json:"course_id"`
	DistributionID string `json:"distribution_id"`
	IRID           string `json:"ir_id"`
	ApprovalID     string `json:"approval_id"`
	MissionID      string `json:"mission_id"`
}

// OwnStream returns the stream an event of type typ with payload must be
// in for a module to have decided it: the stream of the aggregate its
// payload names, as the module's repository names it
// (aggregates.StreamPrefix of the aggregate's name, then its id):
// course.* in course-<course_id>, distribution.* in
// distribution-<distribution_id>, ir.approval_* in
// approval-<approval_id>, the other ir.* in ir-<ir_id>, mission.* in
// mission-<mission_id>. The modules append their events only there and
// the API refuses raw appends into those streams, so the same type
// anywhere else was appended raw by a tenant. The catalog applies course
// and distribution events by the same rule (its ownStream).
//
// module is false for a type of no module (a deployment's own types,
// which no module decides). stream is "" (no event is in it) when the
// payload does not decode.
func OwnStream(typ string, payload []byte) (stream string, module bool) {
	var aggregate string
	var id func(aggregateIDs) string
	switch {
	case strings.HasPrefix(typ, "course."):
		aggregate, id = coursefactory.AggregateName, func(p aggregateIDs) string { return p.CourseID }
	case strings.HasPrefix(typ, "distribution."):
		aggregate, id = distribution.AggregateName, func(p aggregateIDs) string { return p.DistributionID }
	case strings.HasPrefix(typ, "ir.approval_"):
		aggregate, id = governance.ApprovalAggregate, func(p aggregateIDs) string { return p.ApprovalID }
	case strings.HasPrefix(typ, "ir."):
		aggregate, id = governance.IRAggregate, func(p aggregateIDs) string { return p.IRID }
	case strings.HasPrefix(typ, "mission."):
		aggregate, id = missions.AggregateName, func(p aggregateIDs) string { return p.MissionID }
	default:
		return "", false
	}
	var p aggregateIDs
	if err := json.Unmarshal(payload, &p); err != nil {
		return "", true
	}
	return aggregates.StreamPrefix(aggregate) + id(p), true
}

// decided says whether e is an event its module decided, or of a type no
// module has: the outcome tables count only those (see OwnStream).
func decided(e eventstore.Event) bool {
	want, module := OwnStream(e.Type, e.Payload)
	return !module || (want != "" && e.Stream == want)
}

type dayKey struct {
	tenant string
	day    time.Time
	key    string
}

func compareKeys(a, b dayKey) int {
	return cmp.Or(strings.Compare(a.tenant, b.tenant), a.day.Compare(b.day), strings.Compare(a.key, b.key))
}

// handle sums the batch in memory and adds the sums with three upserts,
// each over sorted keys so that concurrent writers lock rows in one order.
func handle(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	counts := map[dayKey]int64{}
	outcomes := map[dayKey]*[3]int64{}
	gen := map[dayKey]*[3]int64{}
	for _, e := range events {
		t := e.Timestamp.UTC()
		day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		tenant := e.Meta.TenantID
		counts[dayKey{tenant, day, e.Type}]++
		subject, outcome, isOutcome := Outcome(e.Type)
		gi := slices.Index([]string{GenerationRequested, GenerationCompleted, GenerationFailed}, e.Type)
		if (!isOutcome && gi < 0) || !decided(e) {
			// Counted above, whatever its stream; an outcome only if its
			// module decided it.
			continue
		}
		if isOutcome {
			k := dayKey{tenant, day, subject}
			if outcomes[k] == nil {
				outcomes[k] = new([3]int64)
			}
			outcomes[k][slices.Index([]string{"created", "completed", "failed"}, outcome)]++
		}
		if gi >= 0 {
			k := dayKey{tenant, day, ""}
			if gen[k] == nil {
				gen[k] = new([3]int64)
			}
			gen[k][gi]++
		}
	}

	keys := sortedKeys(counts)
	tenants, days, names, n := columns(keys)
	for i, k := range keys {
		n[0][i] = counts[k]
	}
	if _, err := tx.Exec(ctx, `INSERT INTO analytics_event_counts AS t (tenant_id, day, event_type, events)
		SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::bigint[])
		ON CONFLICT (tenant_id, day, event_type) DO UPDATE SET events = t.events + excluded.events`,
		tenants, days, names, n[0]); err != nil {
		return fmt.Errorf("analytics: event counts: %w", err)
	}

	if len(outcomes) > 0 {
		keys := sortedKeys(outcomes)
		tenants, days, names, n := columns(keys)
		for i, k := range keys {
			n[0][i], n[1][i], n[2][i] = outcomes[k][0], outcomes[k][1], outcomes[k][2]
		}
		if _, err := tx.Exec(ctx, `INSERT INTO analytics_outcomes AS t (tenant_id, day, subject, created, completed, failed)
			SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
			ON CONFLICT (tenant_id, day, subject) DO UPDATE SET created = t.created + excluded.created,
				completed = t.completed + excluded.completed, failed = t.failed + excluded.failed`,
			tenants, days, names, n[0], n[1], n[2]); err != nil {
			return fmt.Errorf("analytics: outcomes: %w", err)
		}
	}

	if len(gen) > 0 {
		keys := sortedKeys(gen)
		tenants, days, _, n := columns(keys)
		for i, k := range keys {
			n[0][i], n[1][i], n[2][i] = gen[k][0], gen[k][1], gen[k][2]
		}
		if _, err := tx.Exec(ctx, `INSERT INTO analytics_generation_daily AS t (tenant_id, day, requested, completed, failed)
			SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[], $5::bigint[])
			ON CONFLICT (tenant_id, day) DO UPDATE SET requested = t.requested + excluded.requested,
				completed = t.completed + excluded.completed, failed = t.failed + excluded.failed`,
			tenants, days, n[0], n[1], n[2]); err != nil {
			return fmt.Errorf("analytics: generation: %w", err)
		}
	}
	return nil
}

func sortedKeys[V any](m map[dayKey]V) []dayKey {
	keys := make([]dayKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

func columns(keys []dayKey) (tenants []string, days []time.Time, names []string, n [3][]int64) {
	tenants = make([]string, len(keys))
	days = make([]time.Time, len(keys))
	names = make([]string, len(keys))
	for i := range n {
		n[i] = make([]int64, len(keys))
	}
	for i, k := range keys {
		tenants[i], days[i], names[i] = k.tenant, k.day, k.key
	}
	return
}
