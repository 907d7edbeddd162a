package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// A payloadGen builds one realistic payload of an event type of the
// domain. size is the wanted payload size in bytes (0: the type's natural
// size); generators that have free text or lists grow them towards it,
// within what their schema allows, and the others ignore it.
type payloadGen struct {
	typ     string
	version int
	source  string
	build   func(r *rand.Rand, size int) map[string]any
}

// generators covers every event type under schemas/ (tested: each payload
// passes its schema). A type added to schemas/ without a generator is left
// out of the mixes; TestEveryDomainTypeHasAGenerator names it.
var generators = []payloadGen{
	// course_factory
	{"course.generation.requested", 2, "coursefactory", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"course_id": id(r), "topic": grow(r, topic(r), size-120, 500),
			"requested_by": user(r), "attempt": 1 + r.IntN(3), "language": pick(r, "en", "fr", "de", "es", "pt-BR", "en-GB")}
	}},
	{"course.generation.completed", 1, "coursefactory", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"course_id": id(r), "title": grow(r, topic(r), size-110, 300), "lesson_count": 3 + r.IntN(20), "attempt": 1 + r.IntN(2)}
	}},
	{"course.generation.failed", 1, "coursefactory", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"course_id": id(r), "stage": pick(r, "requested", "outlining", "generating", "review"),
			"reason": grow(r, "model output failed validation: "+sentence(r), size-110, 2000), "attempt": 1 + r.IntN(3)}
	}},
	{"course.outline.created", 1, "coursefactory", func(r *rand.Rand, size int) map[string]any {
		n := 3 + r.IntN(10)
		if size > 0 {
			n = clamp((size-400)/70, 1, 200)
		}
		lessons := make([]any, n)
		for i := range lessons {
			lessons[i] = map[string]any{"slot": i + 1, "title": fmt.Sprintf("Lesson %d: %s", i+1, words(r, 4+r.IntN(5)))}
		}
		return map[string]any{"course_id": id(r), "title": topic(r), "summary": grow(r, sentence(r), min(size/4, 5000)-60, 5000), "lessons": lessons}
	}},
	{"course.lesson.generated", 1, "coursefactory", func(r *rand.Rand, size int) map[string]any {
		c := id(r)
		return map[string]any{"course_id": c, "slot": 1 + r.IntN(20), "title": grow(r, words(r, 5+r.IntN(5)), size-220, 300),
			"content_uri": "https://content.example.org/courses/" + c + "/lessons/" + strconv.Itoa(1+r.IntN(20)) + ".md",
			"word_count":  800 + r.IntN(3000)}
	}},
	{"course.quiz.created", 1, "coursefactory", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"course_id": id(r), "quiz_id": id(r), "question_count": 5 + r.IntN(20)}
	}},
	{"course.landing_page.created", 1, "coursefactory", func(r *rand.Rand, size int) map[string]any {
		t := topic(r)
		return map[string]any{"course_id": id(r), "headline": grow(r, "Learn "+t, size-120, 300), "slug": slug(t)}
	}},
	{"course.workflow.transitioned", 1, "coursefactory", func(r *rand.Rand, size int) map[string]any {
		states := []string{"requested", "outlining", "generating", "review", "completed"}
		i := r.IntN(len(states) - 1)
		return map[string]any{"course_id": id(r), "from": states[i], "to": states[i+1]}
	}},
	{"course.deployed.staging", 1, "coursefactory", func(r *rand.Rand, size int) map[string]any {
		c := id(r)
		return map[string]any{"course_id": c, "distribution_id": id(r), "staging_url": "https://staging.example.org/c/" + c}
	}},
	// distribution
	{"distribution.created", 1, "distribution", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"distribution_id": id(r), "course_id": id(r), "channel": pick(r, "web", "marketplace", "email", "social", "partner"),
			"title": grow(r, topic(r), size-140, 300), "version": "1.0.0"}
	}},
	{"distribution.updated", 1, "distribution", func(r *rand.Rand, size int) map[string]any {
		changes := map[string]any{"title": topic(r), "price_cents": 900 + 100*r.IntN(200), "currency": pick(r, "EUR", "USD", "GBP"),
			"tags": uniqueWords(r, 2+r.IntN(5))}
		if size > 0 || r.IntN(3) == 0 {
			changes["description"] = grow(r, sentence(r), size-250, 10000)
		}
		return map[string]any{"distribution_id": id(r), "course_id": id(r), "changes": changes}
	}},
	{"distribution.published", 1, "distribution", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"distribution_id": id(r), "course_id": id(r), "version": semver(r)}
	}},
	{"distribution.unpublished", 1, "distribution", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"distribution_id": id(r), "course_id": id(r), "reason": grow(r, sentence(r), size-110, 2000)}
	}},
	{"distribution.deleted", 1, "distribution", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"distribution_id": id(r), "course_id": id(r), "reason": grow(r, "retired: "+sentence(r), size-110, 2000)}
	}},
	{"distribution.version_bumped", 1, "distribution", func(r *rand.Rand, size int) map[string]any {
		major, minor := r.IntN(4), r.IntN(10)
		return map[string]any{"distribution_id": id(r), "course_id": id(r), "bump": "minor",
			"from_version": fmt.Sprintf("%d.%d.0", major, minor), "to_version": fmt.Sprintf("%d.%d.0", major, minor+1),
			"reason": grow(r, sentence(r), size-200, 2000)}
	}},
	{"distribution.micro_niche_created", 1, "distribution", func(r *rand.Rand, size int) map[string]any {
		n := 3 + r.IntN(6)
		if size > 0 {
			n = clamp((size-200)/10, 1, 50)
		}
		return map[string]any{"distribution_id": id(r), "course_id": id(r), "niche_id": id(r), "niche": words(r, 3), "keywords": uniqueWords(r, n)}
	}},
	{"distribution.viewed", 1, "distribution", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"distribution_id": id(r), "course_id": id(r), "visitor_id": "v-" + strconv.FormatUint(r.Uint64(), 36),
			"referrer": growURL(r, "https://search.example.com/?q="+slug(topic(r)), size-150, 2048)}
	}},
	{"distribution.enrollment_clicked", 1, "distribution", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"distribution_id": id(r), "course_id": id(r), "visitor_id": "v-" + strconv.FormatUint(r.Uint64(), 36)}
	}},
	// governance: IR validation and approvals
	{"ir.validated_pass", 1, "governance", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"ir_id": irID(r), "ir_sha256": sha(r), "mission_id": id(r), "steps": steps(r, size), "max_tier": 1}
	}},
	{"ir.validated_escalate", 1, "governance", func(r *rand.Rand, size int) map[string]any {
		st := steps(r, size)
		st[len(st)-1].(map[string]any)["tier"] = 3
		return map[string]any{"ir_id": irID(r), "ir_sha256": sha(r), "mission_id": id(r), "steps": st, "max_tier": 3,
			"escalated_steps": []any{st[len(st)-1].(map[string]any)["step_id"]}}
	}},
	{"ir.validated_reject", 1, "governance", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"ir_id": irID(r), "ir_sha256": sha(r), "mission_id": id(r), "step_id": "step-" + strconv.Itoa(1+r.IntN(9)),
			"action": pick(r, "shell.exec", "db.drop_table", "net.egress"), "rule": pick(r, "forbidden-action", "tier-too-high"),
			"message": grow(r, sentence(r), size-260, 2000)}
	}},
	{"ir.dag_diff_ok", 1, "governance", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"ir_id": irID(r), "ir_sha256": sha(r), "mission_id": id(r), "node_count": 2 + r.IntN(30)}
	}},
	{"ir.dag_diff_failed", 1, "governance", func(r *rand.Rand, size int) map[string]any {
		n := 1 + r.IntN(3)
		if size > 0 {
			n = clamp((size-250)/36, 1, 1000)
		}
		ids := func(prefix string, k int) []any {
			out := make([]any, k)
			for i := range out {
				out[i] = fmt.Sprintf("%s-%d", prefix, i+1)
			}
			return out
		}
		return map[string]any{"ir_id": irID(r), "ir_sha256": sha(r), "mission_id": id(r), "severity": "critical",
			"missing_steps": ids("step", n), "unexpected_nodes": ids("node", n), "changed_nodes": ids("changed", n)}
	}},
	{"ir.approval_created", 1, "governance", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"approval_id": id(r), "ir_id": irID(r), "mission_id": id(r), "token_sha256": sha(r),
			"expires_at": time.Date(2026, 1, 1+r.IntN(28), r.IntN(24), 0, 0, 0, time.UTC).Format(time.RFC3339), "requested_by": user(r)}
	}},
	{"ir.approval_consumed", 1, "governance", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"approval_id": id(r), "ir_id": irID(r), "mission_id": id(r), "consumed_by": user(r)}
	}},
	{"ir.approval_expired", 1, "governance", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"approval_id": id(r), "ir_id": irID(r), "mission_id": id(r),
			"expires_at": time.Date(2026, 1, 1+r.IntN(28), r.IntN(24), 0, 0, 0, time.UTC).Format(time.RFC3339)}
	}},
	{"ir.approval_invalid", 2, "governance", func(r *rand.Rand, size int) map[string]any {
		approval, ir := id(r), irID(r)
		reason := pick(r, "unknown_approval", "token_mismatch", "already_consumed", "self_approval", "approver_unnamed", "mission_mismatch")
		p := map[string]any{"approval_id": approval, "ir_id": ir, "reason": reason, "attempted_by": user(r)}
		if reason == "mission_mismatch" {
			// governance names the mission presented for this reason only.
			p["presented_mission_id"] = id(r)
		}
		return p
	}},
	// missions
	{"mission.created", 1, "missions", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"mission_id": id(r), "ir_id": irID(r), "title": "Mission: " + topic(r), "steps": steps(r, size), "created_by": user(r)}
	}},
	{"mission.validated", 1, "missions", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"mission_id": id(r), "ir_id": irID(r), "outcome": "pass", "max_tier": r.IntN(2)}
	}},
	{"mission.approval_granted", 1, "missions", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"mission_id": id(r), "ir_id": irID(r), "approval_id": id(r)}
	}},
	{"mission.started", 1, "missions", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"mission_id": id(r), "ir_id": irID(r), "approval_id": id(r)}
	}},
	{"mission.task.created", 1, "missions", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"mission_id": id(r), "task_id": id(r), "step_id": "step-" + strconv.Itoa(1+r.IntN(9)),
			"action": pick(r, "course.generate", "course.publish", "email.send", "report.build")}
	}},
	{"mission.task.completed", 1, "missions", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"mission_id": id(r), "task_id": id(r), "step_id": "step-" + strconv.Itoa(1+r.IntN(9))}
	}},
	{"mission.completed", 1, "missions", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"mission_id": id(r), "task_count": 1 + r.IntN(9)}
	}},
	{"mission.failed", 1, "missions", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"mission_id": id(r), "task_id": id(r), "reason": grow(r, "task failed: "+sentence(r), size-130, 2000)}
	}},
	{"mission.cancelled", 1, "missions", func(r *rand.Rand, size int) map[string]any {
		return map[string]any{"mission_id": id(r), "reason": grow(r, sentence(r), size-100, 2000), "cancelled_by": user(r)}
	}},
}

func generatorFor(typ string) (payloadGen, bool) {
	for _, g := range generators {
		if g.typ == typ {
			return g, true
		}
	}
	return payloadGen{}, false
}

// TypeWeight is one event type of a mix and its relative frequency.
type TypeWeight struct {
	Type   string `json:"type"`
	Weight int    `json:"weight"`
}

// Mix is the event types a run writes, each with a relative weight.
type Mix []TypeWeight

// DomainMix is the default mix: every type of the domain, weighted as the
// domain produces them (many views, lessons and tasks; few deletions).
func DomainMix() Mix {
	w := map[string]int{
		"distribution.viewed": 30, "distribution.enrollment_clicked": 6, "course.lesson.generated": 12,
		"mission.task.created": 6, "mission.task.completed": 6, "course.workflow.transitioned": 5,
		"ir.validated_pass": 3, "ir.dag_diff_ok": 3, "course.generation.requested": 2, "course.generation.completed": 2,
		"course.outline.created": 2, "course.quiz.created": 2, "distribution.updated": 2, "mission.created": 2,
		"mission.validated": 2, "mission.started": 2, "mission.completed": 2, "ir.approval_created": 1, "ir.approval_consumed": 1,
	}
	m := make(Mix, 0, len(generators))
	for _, g := range generators {
		weight := w[g.typ]
		if weight == 0 {
			weight = 1
		}
		m = append(m, TypeWeight{Type: g.typ, Weight: weight})
	}
	return m
}

// UniformMix is every type of the domain with the same weight.
func UniformMix() Mix {
	m := make(Mix, len(generators))
	for i, g := range generators {
		m[i] = TypeWeight{Type: g.typ, Weight: 1}
	}
	return m
}

// ParseMix reads "domain" (the default), "uniform", or a list
// "type[=weight],..." such as "course.lesson.generated=3,distribution.viewed".
// A prefix ending in ".*" ("mission.*") stands for every type under it.
func ParseMix(s string) (Mix, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "domain":
		return DomainMix(), nil
	case "uniform", "all":
		return UniformMix(), nil
	}
	var m Mix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, ws, hasW := strings.Cut(part, "=")
		weight := 1
		if hasW {
			n, err := strconv.Atoi(strings.TrimSpace(ws))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("bench: mix %q: weight of %s must be an integer >= 1", s, name)
			}
			weight = n
		}
		name = strings.TrimSpace(name)
		if prefix, ok := strings.CutSuffix(name, "*"); ok {
			found := false
			for _, g := range generators {
				if strings.HasPrefix(g.typ, prefix) {
					m = append(m, TypeWeight{Type: g.typ, Weight: weight})
					found = true
				}
			}
			if !found {
				return nil, fmt.Errorf("bench: mix: no event type matches %s", name)
			}
			continue
		}
		if _, ok := generatorFor(name); !ok {
			return nil, fmt.Errorf("bench: mix: no generator for event type %q (known: %s)", name, strings.Join(KnownTypes(), ", "))
		}
		m = append(m, TypeWeight{Type: name, Weight: weight})
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("bench: mix %q names no event type", s)
	}
	return m, nil
}

// String renders the mix as ParseMix reads it.
func (m Mix) String() string {
	parts := make([]string, len(m))
	for i, tw := range m {
		parts[i] = tw.Type + "=" + strconv.Itoa(tw.Weight)
	}
	return strings.Join(parts, ",")
}

// KnownTypes returns the event types the bench can generate, sorted.
func KnownTypes() []string {
	out := make([]string, len(generators))
	for i, g := range generators {
		out[i] = g.typ
	}
	sort.Strings(out)
	return out
}

// samplePayload is one pre-built payload of a type.
type samplePayload struct {
	gen     *payloadGen
	payload json.RawMessage
}

// payloadPool holds pre-built payloads so that building JSON is not part
// of what the bench times; the pick is weighted by the mix.
type payloadPool struct {
	byType  [][]samplePayload
	cum     []int // cumulative weights, parallel to byType
	total   int
	avgSize float64
}

func newPayloadPool(m Mix, size int, perType int, seed uint64) (*payloadPool, error) {
	p := &payloadPool{}
	var bytes, n int
	for i, tw := range m {
		g, ok := generatorFor(tw.Type)
		if !ok {
			return nil, fmt.Errorf("bench: no generator for event type %q", tw.Type)
		}
		if tw.Weight < 1 {
			return nil, fmt.Errorf("bench: event type %q: weight must be >= 1", tw.Type)
		}
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		samples := make([]samplePayload, perType)
		for j := range samples {
			b, err := json.Marshal(g.build(r, size))
			if err != nil {
				return nil, fmt.Errorf("bench: build %s payload: %w", g.typ, err)
			}
			samples[j] = samplePayload{gen: &g, payload: b}
			bytes += len(b) * tw.Weight
			n += tw.Weight
		}
		p.byType = append(p.byType, samples)
		p.total += tw.Weight
		p.cum = append(p.cum, p.total)
	}
	if p.total == 0 {
		return nil, fmt.Errorf("bench: the event type mix is empty")
	}
	p.avgSize = float64(bytes) / float64(n)
	return p, nil
}

func (p *payloadPool) pick(r *rand.Rand) samplePayload {
	w := r.IntN(p.total)
	i, _ := slices.BinarySearch(p.cum, w+1)
	s := p.byType[i]
	return s[r.IntN(len(s))]
}

// Vocabulary of the generated text.

var vocabulary = strings.Fields(`event sourcing projection stream aggregate schema version tenant mission lesson course outline quiz
distribution approval governance pipeline replay snapshot consumer producer envelope validation postgres index query latency
throughput backpressure idempotent ordering checkpoint ledger catalog analytics audit alert channel marketplace partner email
social web design pattern practice advanced beginner intermediate guide hands-on workshop modern reliable distributed systems
data engineering product marketing writing python golang rust kubernetes observability security privacy compliance finance`)

func word(r *rand.Rand) string { return vocabulary[r.IntN(len(vocabulary))] }

func words(r *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = word(r)
	}
	return strings.Join(w, " ")
}

func uniqueWords(r *rand.Rand, n int) []any {
	n = min(n, len(vocabulary))
	idx := r.Perm(len(vocabulary))[:n]
	out := make([]any, n)
	for i, j := range idx {
		out[i] = vocabulary[j]
	}
	return out
}

func topic(r *rand.Rand) string {
	s := words(r, 3+r.IntN(4))
	return strings.ToUpper(s[:1]) + s[1:]
}

func sentence(r *rand.Rand) string { return topic(r) + "." }

// grow appends sentences to s until it is about extra bytes longer, never
// past maxLen.
func grow(r *rand.Rand, s string, extra, maxLen int) string {
	target := min(len(s)+max(extra, 0), maxLen)
	var b strings.Builder
	b.WriteString(s)
	for b.Len() < target {
		b.WriteByte(' ')
		b.WriteString(sentence(r))
	}
	out := b.String()
	if len(out) > maxLen {
		out = strings.TrimSpace(out[:maxLen])
	}
	return out
}

func growURL(r *rand.Rand, u string, extra, maxLen int) string {
	target := min(len(u)+max(extra, 0), maxLen)
	for len(u) < target {
		u += "+" + word(r)
	}
	return u[:min(len(u), maxLen)]
}

func slug(s string) string {
	f := strings.Fields(strings.ToLower(s))
	for i := range f {
		f[i] = strings.Map(func(c rune) rune {
			if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
				return c
			}
			return -1
		}, f[i])
	}
	f = slices.DeleteFunc(f, func(x string) bool { return x == "" })
	if len(f) == 0 {
		return "course"
	}
	return strings.Join(f, "-")
}

func id(r *rand.Rand) string { return randomUUID(r).String() }

// randomUUID draws a version 4 UUID from r (deterministic for a seed).
func randomUUID(r *rand.Rand) uuid.UUID {
	var u uuid.UUID
	a, b := r.Uint64(), r.Uint64()
	for i := range 8 {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(b >> (8 * i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// orderedUUID draws a version 7 UUID from r whose timestamp is ms: ids
// made for later appends sort after earlier ones, as the domain's do (see
// aggregates.CommandMeta).
func orderedUUID(r *rand.Rand, ms int64) uuid.UUID {
	u := randomUUID(r)
	for i := range 6 {
		u[i] = byte(ms >> (8 * (5 - i)))
	}
	u[6] = u[6]&0x0f | 0x70
	return u
}

func pick(r *rand.Rand, xs ...string) string { return xs[r.IntN(len(xs))] }

func user(r *rand.Rand) string {
	return pick(r, "user:ada", "user:grace", "user:linus", "service:planner", "service:scheduler")
}

func irID(r *rand.Rand) string { return fmt.Sprintf("ir-%d.%d", 1000+r.IntN(9000), 1+r.IntN(5)) }

func sha(r *rand.Rand) string {
	var b [8]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	s := sha256.Sum256(b[:])
	return hex.EncodeToString(s[:])
}

func semver(r *rand.Rand) string { return fmt.Sprintf("%d.%d.%d", 1+r.IntN(3), r.IntN(10), r.IntN(10)) }

// steps builds an IR plan of low-risk steps (tier 0 or 1), about size
// bytes long when size > 0.
func steps(r *rand.Rand, size int) []any {
	n := 2 + r.IntN(6)
	if size > 0 {
		n = clamp((size-250)/60, 1, 1000)
	}
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"step_id": fmt.Sprintf("step-%d", i+1),
			"action": pick(r, "course.generate", "course.publish", "email.send", "report.build", "db.read"),
			"tier":   r.IntN(2)}
	}
	return out
}

func clamp(n, lo, hi int) int { return max(lo, min(n, hi)) }
