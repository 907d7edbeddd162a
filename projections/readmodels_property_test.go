package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// historyGen makes a random but plausible domain history: for each
// tenant, courses with one to three attempts (v1 and v2 requests,
// outlines, lessons, quizzes, landing pages, completions, failures,
// workflow transitions), their distributions (created, deployed to
// staging, updated with any subset of fields, published, unpublished,
// viewed, clicked, micro niches, version bumps, deleted), IR checks,
// approvals refused for every reason, missions, and events forged into
// producer streams and other aggregates' streams. Each stream's events
// are in the order its aggregate would write them; the streams are
// interleaved at random.
type historyGen struct {
	r       *rand.Rand
	streams map[string][]eventstore.Event
	names   []string
	// future are distribution ids a course was deployed to staging for
	// before any distribution had them (DeployStaging names any
	// distribution); a later distribution, of another course, takes one.
	future map[string][]futureDist
}

type futureDist struct{ course, id uuid.UUID }

func (g *historyGen) ev(tenant, typ string, version int, p map[string]any) eventstore.Event {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	e := eventstore.Event{ID: uuid.New(), Type: typ, Source: "svc/" + tenant, Payload: b,
		Meta: eventstore.Meta{SchemaVersion: version, TenantID: tenant}}
	if g.r.IntN(2) == 0 {
		e.Meta.CorrelationID = fmt.Sprintf("corr-%d", g.r.IntN(5))
	}
	switch g.r.IntN(4) {
	case 0:
		e.Target = "target/→/" + tenant
		e.Meta.CausationID = uuid.NewString()
		e.Meta.Producer = "prod 🚀"
		e.Meta.Extra = map[string]any{"big": json.Number("123456789012345678901234567890"), "trace": map[string]any{"ids": []any{json.Number("1"), "二"}}, "nil": nil}
	case 1:
		e.Meta.Extra = map[string]any{"max_int64": json.Number("9223372036854775807"), "flag": true, "f": json.Number("1.5e300")}
	}
	return e
}

func (g *historyGen) add(stream string, evs ...eventstore.Event) {
	if _, ok := g.streams[stream]; !ok {
		g.names = append(g.names, stream)
	}
	g.streams[stream] = append(g.streams[stream], evs...)
}

func (g *historyGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *historyGen) course(tenant string) {
	id := uuid.New()
	stream := "course-" + id.String()
	c := func(typ string, version int, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": id}
		for k, v := range extra {
			p[k] = v
		}
		return g.ev(tenant, typ, version, p)
	}
	state := "none"
	tr := func(to string) {
		g.add(stream, c("course.workflow.transitioned", 1, map[string]any{"from": state, "to": to}))
		state = to
	}
	attempts := 1 + g.r.IntN(3)
	completed := false
	for a := 1; a <= attempts; a++ {
		if g.r.IntN(2) == 0 {
			g.add(stream, c("course.generation.requested", 1, map[string]any{"topic": fmt.Sprintf("topic %d", a), "attempt": a}))
		} else {
			g.add(stream, c("course.generation.requested", 2, map[string]any{"topic": fmt.Sprintf("topic %d", a), "attempt": a,
				"language": g.pick("en", "fr", "de-CH")}))
		}
		tr("requested")
		last := a == attempts
		if g.r.IntN(4) > 0 {
			tr("outlining")
			n := 1 + g.r.IntN(4)
			var lessons []map[string]any
			for i := 1; i <= n; i++ {
				lessons = append(lessons, map[string]any{"slot": i, "title": fmt.Sprintf("l%d", i)})
			}
			g.add(stream, c("course.outline.created", 1, map[string]any{"title": fmt.Sprintf("Course %d", a), "lessons": lessons}))
			tr("generating")
			for i := 1; i <= g.r.IntN(n+1); i++ {
				g.add(stream, c("course.lesson.generated", 1, map[string]any{"slot": i, "title": fmt.Sprintf("l%d", i)}))
			}
			if g.r.IntN(2) == 0 {
				g.add(stream, c("course.quiz.created", 1, map[string]any{"quiz_id": uuid.New(), "question_count": 1 + g.r.IntN(9)}))
			}
			if g.r.IntN(2) == 0 {
				g.add(stream, c("course.landing_page.created", 1, map[string]any{"headline": "h", "slug": fmt.Sprintf("slug-%d", a)}))
			}
		}
		switch {
		case last && g.r.IntN(3) > 0:
			g.add(stream, c("course.generation.completed", 1, map[string]any{"title": fmt.Sprintf("Course %d", a), "lesson_count": 1 + g.r.IntN(4), "attempt": a}))
			tr("completed")
			completed = true
		case !last || g.r.IntN(2) == 0:
			g.add(stream, c("course.generation.failed", 1, map[string]any{"stage": state, "reason": "r", "attempt": a}))
			tr("failed")
		}
	}
	if !completed && g.r.IntN(4) > 0 {
		return
	}
	if completed && g.r.IntN(2) == 0 {
		d := uuid.New()
		g.add(stream, c("course.deployed.staging", 1, map[string]any{"distribution_id": d, "staging_url": "https://s/early"}))
		g.future[tenant] = append(g.future[tenant], futureDist{id, d})
	}
	for range g.r.IntN(3) {
		g.distribution(tenant, id, stream, c)
	}
}

func (g *historyGen) distribution(tenant string, course uuid.UUID, courseStream string, c func(string, int, map[string]any) eventstore.Event) {
	id := uuid.New()
	if f := g.future[tenant]; len(f) > 0 && f[0].course != course && g.r.IntN(4) > 0 {
		id, g.future[tenant] = f[0].id, f[1:]
	}
	stream := "distribution-" + id.String()
	d := func(typ string, extra map[string]any) eventstore.Event {
		p := map[string]any{"course_id": course, "distribution_id": id}
		for k, v := range extra {
			p[k] = v
		}
		return g.ev(tenant, typ, 1, p)
	}
	version := "1.0.0"
	g.add(stream, d("distribution.created", map[string]any{"channel": g.pick("web", "partner"), "title": "t0", "version": version}))
	for range g.r.IntN(3) {
		// The distribution-created reaction deploys the course to
		// staging, which another reaction records on the distribution;
		// a deployment may be repeated with another URL.
		url := fmt.Sprintf("https://s/%d", g.r.IntN(100))
		g.add(courseStream, c("course.deployed.staging", 1, map[string]any{"distribution_id": id, "staging_url": url}))
		if g.r.IntN(2) == 0 {
			g.add(stream, d("distribution.updated", map[string]any{"changes": map[string]any{"staging_url": url}}))
		}
	}
	for range 3 + g.r.IntN(12) {
		switch g.r.IntN(9) {
		case 0:
			changes := map[string]any{}
			if g.r.IntN(2) == 0 {
				changes["title"] = fmt.Sprintf("t%d", g.r.IntN(100))
			}
			if g.r.IntN(2) == 0 {
				changes["price_cents"] = g.r.IntN(10000)
			}
			if g.r.IntN(2) == 0 {
				changes["currency"] = g.pick("EUR", "USD")
			}
			if g.r.IntN(2) == 0 {
				changes["staging_url"] = fmt.Sprintf("https://u/%d", g.r.IntN(100))
			}
			if len(changes) == 0 {
				changes["description"] = "only a description"
			}
			g.add(stream, d("distribution.updated", map[string]any{"changes": changes}))
		case 1:
			g.add(stream, d("distribution.published", map[string]any{"version": version}))
		case 2:
			g.add(stream, d("distribution.unpublished", map[string]any{}))
		case 3, 4:
			g.add(stream, d("distribution.viewed", map[string]any{"visitor_id": fmt.Sprintf("v%d", g.r.IntN(10))}))
		case 5:
			g.add(stream, d("distribution.enrollment_clicked", map[string]any{}))
		case 6:
			g.add(stream, d("distribution.micro_niche_created", map[string]any{"niche_id": uuid.New(), "niche": "n"}))
		case 7:
			to := fmt.Sprintf("1.%d.0", g.r.IntN(50)+1)
			g.add(stream, d("distribution.version_bumped", map[string]any{"bump": "minor", "from_version": version, "to_version": to}))
			version = to
		case 8:
			// A view forged by a producer into its own stream, and a
			// completion forged into another distribution's stream.
			g.add("web-"+tenant, d("distribution.viewed", map[string]any{"visitor_id": "forged"}))
			g.add(stream, c("course.generation.completed", 1, map[string]any{"title": "forged", "lesson_count": 1, "attempt": 9}))
		}
	}
	if g.r.IntN(4) == 0 {
		g.add(stream, d("distribution.deleted", map[string]any{}))
	}
}

func (g *historyGen) governance(tenant string) {
	ir := fmt.Sprintf("ir-%s-%d", tenant, g.r.IntN(1000))
	sha := strings.Repeat("ab", 32)
	steps := []map[string]any{{"step_id": "s1", "action": "fetch", "tier": 0}}
	mission := uuid.New()
	ms := "mission-" + mission.String()
	m := func(typ string, extra map[string]any) eventstore.Event {
		p := map[string]any{"mission_id": mission}
		for k, v := range extra {
			p[k] = v
		}
		return g.ev(tenant, typ, 1, p)
	}
	g.add(ms, m("mission.created", map[string]any{"ir_id": ir, "title": "m", "steps": steps}))
	g.add("ir-"+ir, g.ev(tenant, "ir.validated_pass", 1, map[string]any{"ir_id": ir, "ir_sha256": sha, "steps": steps, "max_tier": 0}))
	for range g.r.IntN(4) {
		g.add("ir-"+ir, g.ev(tenant, "ir.dag_diff_failed", 1, map[string]any{"ir_id": ir, "ir_sha256": sha,
			"severity": "critical", "missing_steps": []string{"s1"}, "unexpected_nodes": []string{}, "changed_nodes": []string{}}))
	}
	for range 1 + g.r.IntN(2) {
		approval := uuid.New()
		as := "approval-" + approval.String()
		g.add(as, g.ev(tenant, "ir.approval_created", 1, map[string]any{"approval_id": approval, "ir_id": ir, "token_sha256": sha, "expires_at": "2026-03-30T00:00:00Z"}))
		for range g.r.IntN(5) {
			if g.r.IntN(2) == 0 {
				g.add(as, g.ev(tenant, "ir.approval_invalid", 1, map[string]any{"approval_id": approval, "ir_id": ir,
					"reason": g.pick("token_mismatch", "tenant_mismatch", "already_consumed", "unknown_approval")}))
			} else {
				g.add(as, g.ev(tenant, "ir.approval_invalid", 2, map[string]any{"approval_id": approval, "ir_id": ir,
					"reason": g.pick("self_approval", "approver_unnamed", "mission_mismatch", "token_mismatch")}))
			}
		}
		if g.r.IntN(3) == 0 {
			// Forged: no alert, counted by analytics and the audit log.
			g.add("web-"+tenant, g.ev(tenant, "ir.approval_invalid", 1, map[string]any{"approval_id": approval, "reason": "tenant_mismatch"}))
		}
	}
	task := uuid.New()
	g.add(ms, m("mission.started", map[string]any{"ir_id": ir}),
		m("mission.task.created", map[string]any{"task_id": task, "step_id": "s1", "action": "fetch"}),
		m("mission.task.completed", map[string]any{"task_id": task, "step_id": "s1"}))
	if g.r.IntN(2) == 0 {
		g.add(ms, m("mission.completed", map[string]any{"task_count": 1}))
	} else {
		g.add(ms, m("mission.failed", map[string]any{"reason": "x", "task_id": task}))
	}
}

// appends returns the history as appends of one to three consecutive
// events of a stream, the streams interleaved at random: a stream joins
// the log some time after the ones generated before it, as aggregates
// are born over time, and then its appends mix with those of the others;
// the older ones are picked more often.
func (g *historyGen) appends() (out []streamAppend) {
	next := map[string]int{}
	var live []string
	waiting := append([]string(nil), g.names...)
	for len(live) > 0 || len(waiting) > 0 {
		if len(waiting) > 0 && (len(live) < 3 || g.r.IntN(4) == 0) {
			live, waiting = append(live, waiting[0]), waiting[1:]
			continue
		}
		i := g.r.IntN(len(live))
		if g.r.IntN(2) == 0 {
			i = 0 // the oldest, so streams mostly end in the order they began
		}
		s := live[i]
		k := min(1+g.r.IntN(3), len(g.streams[s])-next[s])
		out = append(out, streamAppend{s, g.streams[s][next[s] : next[s]+k]})
		next[s] += k
		if next[s] == len(g.streams[s]) {
			live = append(live[:i], live[i+1:]...)
		}
	}
	return out
}

// earlyDeployments counts the deployments to staging that come before
// the creation of their distribution, for another course.
func earlyDeployments(history []streamAppend) int {
	type ids struct {
		Course string `json:"course_id"`
		Dist   string `json:"distribution_id"`
	}
	deployed := map[string]string{}
	n := 0
	for _, a := range history {
		for _, e := range a.events {
			var p ids
			_ = json.Unmarshal(e.Payload, &p)
			switch e.Type {
			case "course.deployed.staging":
				if _, ok := deployed[p.Dist]; !ok {
					deployed[p.Dist] = p.Course
				}
			case "distribution.created":
				if c, ok := deployed[p.Dist]; ok && c != p.Course {
					n++
				}
				deployed[p.Dist] = p.Course
			}
		}
	}
	return n
}

type streamAppend struct {
	stream string
	events []eventstore.Event
}

func randomHistory(r *rand.Rand) []streamAppend {
	g := &historyGen{r: r, streams: map[string][]eventstore.Event{}, future: map[string][]futureDist{}}
	for _, tenant := range []string{"acme", "globex", "initech"} {
		for range 4 + r.IntN(4) {
			g.course(tenant)
		}
		g.governance(tenant)
		// A course event forged into the producer's stream.
		g.add("web-"+tenant, g.ev(tenant, "course.generation.completed", 1, map[string]any{"course_id": uuid.New(), "title": "x", "lesson_count": 1, "attempt": 1}))
	}
	return g.appends()
}

// propertyClock stamps events over several UTC days, out of log order
// by up to five hours (concurrent writers' clocks), as a function of the
// position only, so live and rebuild see the same time.
func propertyClock(p eventstore.Position) time.Time {
	t := time.Date(2026, 3, 28, 20, 0, 0, 0, time.UTC).Add(time.Duration(p.Commit) * 7 * time.Minute)
	return t.Add(-time.Duration(p.Commit*7919%300) * time.Minute)
}

// errFlaky is the failure of a batch whose writes were made: the
// transaction rolls back and the runtime applies the events again.
var errFlaky = errors.New("flaky: failed after writing")

// flaky wraps every projection's handler so that about one call in p
// fails after the handler wrote its rows, as a commit that fails would:
// the batch is applied again after a rolled-back attempt.
func flaky(ps []projections.Projection, r *rand.Rand, p int) []projections.Projection {
	var mu sync.Mutex
	out := make([]projections.Projection, len(ps))
	for i, pr := range ps {
		inner := pr.Handler
		pr.Handler = projections.HandlerFunc(func(ctx context.Context, tx pgx.Tx, evs []eventstore.Event) error {
			if err := inner.Handle(ctx, tx, evs); err != nil {
				return err
			}
			mu.Lock()
			fail := r.IntN(p) == 0
			mu.Unlock()
			if fail {
				return errFlaky
			}
			return nil
		})
		out[i] = pr
	}
	return out
}

// The four read models built live from a random domain history, the
// events arriving while the runner runs in small batches (1 to 5 events),
// the runner stopped and started again ten times (each time with another
// batch size, some with every batch delivered twice, some along with
// another runtime that stops half-way, two of them rebuilt while they
// run) and one batch in about five failing after its writes
// (rolled back and applied again), have exactly the rows a Rebuild from
// scratch writes over the same log in batches of 1,000, and no event is
// parked. Every column is compared: none is a time of processing
// (updated_at, first_seen, published_at and the rest are the events'
// timestamps), so nothing is left out. PROPERTY_SEED replays a seed.
func TestReadModelsLiveInSmallBatchesEqualRebuild(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PROPERTY_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("PROPERTY_SEED=%d", seed)
	// The store's own timestamps (append times, as live notifications and
	// pages deliver them), and timestamps spread over several days out of
	// log order.
	t.Run("append-clock", func(t *testing.T) {
		t.Parallel()
		liveEqualsRebuild(t, seed, func(s eventstore.Store) eventstore.Store { return s })
	})
	t.Run("spread-clock", func(t *testing.T) {
		t.Parallel()
		liveEqualsRebuild(t, seed, func(s eventstore.Store) eventstore.Store { return clockStore{s, propertyClock} })
	})
}

func liveEqualsRebuild(t *testing.T, seed uint64, clock func(eventstore.Store) eventstore.Store) {
	r := rand.New(rand.NewPCG(seed, 1))
	history := randomHistory(r)

	t.Logf("%d appends, %d deployments to a distribution later created for another course", len(history), earlyDeployments(history))

	base := logStore(t)
	store := clock(base)
	pool := poolInZone(t, "America/Los_Angeles")
	ctx := context.Background()

	next := 0
	appendSome := func(n int, pause bool) {
		for ; n > 0 && next < len(history); n-- {
			appendTo(t, base, history[next].stream, history[next].events...)
			next++
			if pause && r.IntN(8) == 0 {
				time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
			}
		}
	}
	const incarnations = 10
	share := len(history)/incarnations + 1
	for incarnation := 0; incarnation < incarnations; incarnation++ {
		cfg := fastConfig()
		cfg.BatchSize = 1 + r.IntN(5)
		cfg.Retry = projections.RetryPolicy{MaxAttempts: 30, InitialBackoff: time.Microsecond, MaxBackoff: time.Millisecond}
		s := store
		if r.IntN(3) == 0 {
			s = clock(twiceStore{base})
		}
		// A backlog while no runner runs, then appends while it runs; it
		// is stopped wherever it is.
		appendSome(r.IntN(share), false)
		rt := newRuntime(t, pool, s, cfg, flaky(allFour(), rand.New(rand.NewPCG(seed, uint64(incarnation)+2)), 5)...)
		stop := runTolerant(t, rt)
		// Some of the time another process runs too, with its own batch
		// size, and stops half-way: whichever holds a projection's lock
		// runs it, and the other takes it over.
		stopOther := func() {}
		if r.IntN(3) == 0 {
			other := cfg
			other.BatchSize = 1 + r.IntN(5)
			stopOther = runTolerant(t, newRuntime(t, pool, store, other, flaky(allFour(), rand.New(rand.NewPCG(seed, uint64(incarnation)+100)), 5)...))
		}
		rebuilt := make(chan error, 1)
		if incarnation == 4 || incarnation == 7 {
			// A rebuild while the runner runs and events keep coming: the
			// runner goes on in the new generation after the swap.
			go func() {
				for _, n := range rt.Names() {
					if _, err := rt.Rebuild(ctx, n, projections.RebuildOptions{}); err != nil {
						rebuilt <- fmt.Errorf("Rebuild %s: %w", n, err)
						return
					}
				}
				rebuilt <- nil
			}()
		} else {
			rebuilt <- nil
		}
		appendSome(r.IntN(share+1)/2, true)
		stopOther()
		appendSome(r.IntN(share+1)/2, true)
		time.Sleep(time.Duration(r.IntN(60)) * time.Millisecond)
		if incarnation == incarnations-1 {
			appendSome(len(history), true)
			waitCaughtUp(t, rt)
		}
		if err := <-rebuilt; err != nil {
			t.Fatal(err)
		}
		stop()
		lag, err := rt.Lag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var at []string
		for _, l := range lag {
			at = append(at, fmt.Sprintf("%s %s/%s", l.Projection, l.Position, l.Head))
		}
		t.Logf("stopped %d (batch size %d): %s", incarnation, cfg.BatchSize, strings.Join(at, ", "))
	}
	// The rebuild reads the default 1,000 events per batch: the whole
	// history in one or two batches.
	cfg := fastConfig()
	cfg.BatchSize = 1000
	rt := newRuntime(t, pool, store, cfg, allFour()...)
	parked, err := rt.ListParked(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) > 0 {
		t.Fatalf("%d events parked, the first by %s: %s", len(parked), parked[0].Projection, parked[0].Error)
	}
	live := dumpEvery(t, pool)
	t.Logf("%d rows", len(live))

	for _, n := range rt.Names() {
		if _, err := rt.Rebuild(ctx, n, projections.RebuildOptions{}); err != nil {
			t.Fatalf("Rebuild %s: %v", n, err)
		}
	}
	rebuilt := dumpEvery(t, pool)
	if strings.Join(live, "\n") != strings.Join(rebuilt, "\n") {
		diffRows(t, live, rebuilt)
	}
}

// runTolerant is run, but a Run cancelled while it starts returns an
// error wrapping context.Canceled (checkMigrated's query), which a stop
// at a random moment may meet: that is not what this test checks.
func runTolerant(t *testing.T, rt *projections.Runtime) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}
}

// diffRows reports the rows of live and rebuilt dumps that differ.
func diffRows(t *testing.T, live, rebuilt []string) {
	t.Helper()
	in := func(rows []string) map[string]bool {
		m := map[string]bool{}
		for _, r := range rows {
			m[r] = true
		}
		return m
	}
	l, b := in(live), in(rebuilt)
	n := 0
	for _, r := range live {
		if !b[r] && n < 20 {
			t.Errorf("live only:    %s", r)
			n++
		}
	}
	for _, r := range rebuilt {
		if !l[r] && n < 40 {
			t.Errorf("rebuild only: %s", r)
			n++
		}
	}
	t.Errorf("live (%d rows) and rebuilt (%d rows) read models differ", len(live), len(rebuilt))
}
