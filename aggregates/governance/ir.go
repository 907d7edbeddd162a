package governance

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"unicode/utf8"
)

// Step is one step of an IR: an action and its risk tier (0 to 3).
type Step struct {
	ID     string `json:"step_id"`
	Action string `json:"action"`
	Tier   int    `json:"tier"`
}

// IR is an intermediate representation: a plan of steps.
type IR struct {
	ID    string `json:"ir_id"`
	Steps []Step `json:"steps"`
}

// EscalationTier is the lowest tier that needs a human approval.
const EscalationTier = 2

// MaxTier is the highest risk tier.
const MaxTier = 3

// check returns what is wrong with the IR's shape, if anything: no steps,
// a step without an id or action, two steps with one id, a tier outside
// 0..MaxTier, or an id or action that is not valid UTF-8.
func (ir IR) check() error {
	if len(ir.Steps) == 0 {
		return fmt.Errorf("the IR has no steps")
	}
	seen := map[string]bool{}
	for i, s := range ir.Steps {
		switch {
		case s.ID == "":
			return fmt.Errorf("step %d has no id", i)
		case !utf8.ValidString(s.ID) || !utf8.ValidString(s.Action):
			// JSON holds U+FFFD for the bad bytes: the verdict would be
			// recorded for another plan than the one judged (two step ids
			// differing only there would be one).
			return fmt.Errorf("step %d: its id %q or action %q is not valid UTF-8", i, s.ID, s.Action)
		case seen[s.ID]:
			return fmt.Errorf("step id %q is used twice", s.ID)
		case s.Action == "":
			return fmt.Errorf("step %q has no action", s.ID)
		case s.Tier < 0 || s.Tier > MaxTier:
			return fmt.Errorf("step %q: tier %d is outside 0..%d", s.ID, s.Tier, MaxTier)
		}
		seen[s.ID] = true
	}
	return nil
}

// SHA256 is the hex SHA-256 of the IR's canonical JSON (its id and steps in
// order), which binds a validation to the exact plan.
func (ir IR) SHA256() string {
	b, _ := json.Marshal(IR{ID: ir.ID, Steps: ir.Steps})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// PolicyRule is a rule an IR step can break.
type PolicyRule struct {
	Rule    string
	Message string
}

// Policy says which actions an IR may never contain.
type Policy struct {
	// Forbidden maps an action to the rule that forbids it.
	Forbidden map[string]PolicyRule
}

// DefaultPolicy forbids the actions no plan may contain.
func DefaultPolicy() Policy {
	return Policy{Forbidden: map[string]PolicyRule{
		"secrets.exfiltrate": {"no-secret-exfiltration", "plans never send secrets out"},
		"tenant.delete":      {"no-tenant-deletion", "tenants are deleted by operators, not plans"},
		"audit.disable":      {"no-audit-tampering", "plans never switch off the audit log"},
		"policy.modify":      {"no-self-modification", "plans never change the policy that checks them"},
	}}
}

// Verdict is the outcome of validating an IR against a policy.
type Verdict struct {
	Outcome   string // "pass", "escalate" or "reject"
	MaxTier   int
	Escalated []string   // ids of steps at EscalationTier or above
	Step      Step       // the offending step (reject)
	Rule      PolicyRule // the broken rule (reject)
}

// Judge validates ir against p: a forbidden action rejects it (the first
// one in plan order), otherwise a step of tier 2 or more escalates it, and
// otherwise it passes.
func (p Policy) Judge(ir IR) Verdict {
	v := Verdict{Outcome: "pass"}
	for _, s := range ir.Steps {
		if r, ok := p.Forbidden[s.Action]; ok {
			return Verdict{Outcome: "reject", MaxTier: maxTier(ir.Steps), Step: s, Rule: r}
		}
		if s.Tier > v.MaxTier {
			v.MaxTier = s.Tier
		}
		if s.Tier >= EscalationTier {
			v.Escalated = append(v.Escalated, s.ID)
		}
	}
	if len(v.Escalated) > 0 {
		v.Outcome = "escalate"
	}
	return v
}

func maxTier(steps []Step) int {
	m := 0
	for _, s := range steps {
		m = max(m, s.Tier)
	}
	return m
}

// Diff compares the nodes of a compiled DAG with the IR's steps: steps
// with no node, nodes with no step, and nodes whose action or tier differ
// from their step. Each list is sorted.
func Diff(steps, nodes []Step) (missing, unexpected, changed []string) {
	want := make(map[string]Step, len(steps))
	for _, s := range steps {
		want[s.ID] = s
	}
	got := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		s, ok := want[n.ID]
		switch {
		case got[n.ID]:
			unexpected = append(unexpected, n.ID) // a duplicated node is an extra one
		case !ok:
			unexpected = append(unexpected, n.ID)
		case s != n:
			changed = append(changed, n.ID)
		}
		got[n.ID] = true
	}
	for _, s := range steps {
		if !got[s.ID] {
			missing = append(missing, s.ID)
		}
	}
	sort.Strings(missing)
	sort.Strings(unexpected)
	sort.Strings(changed)
	return missing, unexpected, changed
}
