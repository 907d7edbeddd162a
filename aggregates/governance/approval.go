package governance

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/brainhq/eventstream/aggregates"
)

// Rules of approvals.
var (
	ErrApprovalExists  = aggregates.Rule("approval-once", "the approval already exists")
	ErrBadExpiry       = aggregates.Rule("approval-expiry", "an approval expires after it is created")
	ErrUnknownApproval = aggregates.Rule("approval-known", "no such approval")
	ErrTokenMismatch   = aggregates.Rule("approval-token", "the token does not match the approval")
	ErrAlreadyConsumed = aggregates.Rule("approval-single-use", "the approval was already used")
	// ErrTenantMismatch is the rule another tenant's use of an approval
	// breaks, as recorded for the approval's tenant (tenant_mismatch); the
	// presenter is answered as for an approval that does not exist
	// (ErrUnknownApproval), so it does not learn that the approval exists.
	ErrTenantMismatch  = aggregates.Rule("approval-tenant", "the approval belongs to another tenant")
	ErrExpired         = aggregates.Rule("approval-unexpired", "the approval has expired")
	ErrNotYetExpired   = aggregates.Rule("expire-after-expiry", "the approval has not reached its expiry")
	ErrMissingToken    = aggregates.Rule("approval-token-given", "a token is required")
	ErrWeakToken       = aggregates.Rule("approval-token-length", "a token the caller chooses has at least MinTokenLength bytes")
	ErrApprovalMission = aggregates.Rule("approval-mission", "an approval created for a mission is consumed for that mission")
	// ErrSelfApproval and ErrApproverUnnamed are the four-eyes principle:
	// an approval that names who requested it is consumed by someone else,
	// who says who they are (an anonymous approver could be the requester).
	ErrSelfApproval    = aggregates.Rule("no-self-approval", "the principal who requested an approval does not grant it")
	ErrApproverUnnamed = aggregates.Rule("approver-named", "an approval that names its requester is consumed by a named approver")
)

// MinTokenLength is the shortest approval token a caller may choose. Only
// the token's SHA-256 is recorded, unsalted, in a log that many read: a
// short token could be found from it offline by trying them all. The
// tokens the service makes are 43 characters (32 random bytes).
const MinTokenLength = 16

// ApprovalState is an approval rebuilt from its events.
type ApprovalState struct {
	ApprovalID  string    `json:"approval_id"`
	Created     bool      `json:"created"`
	IRID        string    `json:"ir_id"`
	MissionID   string    `json:"mission_id,omitempty"`
	TenantID    string    `json:"tenant_id"`
	TokenSHA256 string    `json:"token_sha256"`
	ExpiresAt   time.Time `json:"expires_at"`
	RequestedBy string    `json:"requested_by,omitempty"`
	Consumed    bool      `json:"consumed"`
	ConsumedBy  string    `json:"consumed_by,omitempty"`
	Expired     bool      `json:"expired"`
	// Invalid counts refused attempts, by reason.
	Invalid map[InvalidReason]int `json:"invalid"`
}

func newApproval(id string) ApprovalState {
	return ApprovalState{ApprovalID: id, Invalid: map[InvalidReason]int{}}
}

func applyApproval(s *ApprovalState, e aggregates.Event) error {
	switch d := e.Data.(type) {
	case ApprovalCreated:
		s.Created, s.IRID, s.MissionID, s.TokenSHA256, s.ExpiresAt = true, d.IRID, d.MissionID, d.TokenSHA256, d.ExpiresAt
		s.RequestedBy = d.RequestedBy
		s.TenantID = e.Meta.TenantID
	case ApprovalConsumed:
		s.Consumed, s.ConsumedBy = true, d.ConsumedBy
		if d.MissionID != "" {
			// An approval created for no mission is bound to the one its
			// consumer named.
			s.MissionID = d.MissionID
		}
	case ApprovalExpired:
		s.Expired = true
	case ApprovalInvalid:
		s.Invalid[d.Reason]++
	default:
		return fmt.Errorf("governance: unexpected approval event %T", e.Data)
	}
	return nil
}

// maxTextLen is the longest attempted_by, presented_tenant_id and
// presented_mission_id an ir.approval_invalid holds, in characters.
const maxTextLen = 255

// boundText returns s as a schema string of at most n characters: valid
// UTF-8, NUL bytes (which the store refuses) replaced by U+FFFD, and cut
// with an ellipsis when longer.
func boundText(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// HashToken returns the hex SHA-256 of an approval token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

type approvalAgg = aggregates.Aggregate[ApprovalState]

// CreateApproval asks a human to approve an IR. The token is given to the
// approver out of band; only its hash is recorded.
type CreateApproval struct {
	ApprovalID  string
	IRID        string
	MissionID   string
	Token       string
	ExpiresAt   time.Time
	RequestedBy string

	now      time.Time
	tenantID string // the caller's, set by the service
}

func (c CreateApproval) AggregateID() string { return c.ApprovalID }

func (c CreateApproval) Decide(a *approvalAgg) ([]any, error) {
	if a.State.Created && a.State.TenantID != c.tenantID {
		// Approval ids are one namespace, so another tenant learns that
		// the id is taken, but nothing of the approval.
		return nil, aggregates.Refuse(ErrApprovalExists, "the approval id is taken")
	}
	if a.State.Created {
		return nil, aggregates.Refuse(ErrApprovalExists, "approval for IR %s", a.State.IRID)
	}
	if c.Token == "" {
		return nil, aggregates.Refuse(ErrMissingToken, "create approval: empty token")
	}
	if len(c.Token) < MinTokenLength {
		return nil, aggregates.Refuse(ErrWeakToken, "create approval: the token has %d bytes, want at least %d", len(c.Token), MinTokenLength)
	}
	if !c.ExpiresAt.After(c.now) {
		return nil, aggregates.Refuse(ErrBadExpiry, "expiry %s is not after now (%s)", c.ExpiresAt.Format(time.RFC3339), c.now.Format(time.RFC3339))
	}
	if c.ExpiresAt.UTC().Year() > 9999 {
		// RFC 3339, which the event holds the expiry in, has four-digit years.
		return nil, aggregates.Refuse(ErrBadExpiry, "expiry %s is after year 9999", c.ExpiresAt.Format(time.RFC3339))
	}
	return []any{ApprovalCreated{
		ApprovalID: c.ApprovalID, IRID: c.IRID, MissionID: c.MissionID,
		TokenSHA256: HashToken(c.Token), ExpiresAt: c.ExpiresAt.UTC(), RequestedBy: c.RequestedBy,
	}}, nil
}

// ConsumeApproval uses an approval, once. Each refused attempt is recorded
// (ir.approval_invalid, or ir.approval_expired the first time an expired
// approval is presented) and returned as a *aggregates.RuleError.
//
// When several reasons apply, the first of these wins: unknown approval,
// tenant mismatch, already consumed, expired, token mismatch, mission,
// four eyes (self approval or unnamed approver). So another
// tenant's attempt is always recorded as tenant_mismatch (for the
// approval's tenant), and the token is checked only on an approval that
// could otherwise be used. Service.ConsumeApproval answers another
// tenant's attempt as an unknown approval's.
//
// An approval authorises at most one mission: the one it was created for,
// or, when it was created for none, the MissionID its consumer names (the
// consumption records it; an approval consumed naming no mission
// authorises none). Naming another mission than the one the approval was
// created for is refused with ErrApprovalMission, after the token check
// (so a wrong token is token_mismatch whatever mission it names) and
// before four eyes, consumes nothing, and is recorded as
// ir.approval_invalid (v2: mission_mismatch) for the approval's tenant,
// with presented_mission_id as presented: a holder of the token using it
// to authorise another mission is trying to get round the control.
//
// Four eyes: an approval whose CreateApproval named its requester
// (RequestedBy) is consumed by someone else. A ConsumedBy that is the
// requester (compared without surrounding white space and the characters
// that show nothing: control and format characters and the rest of
// Unicode's default-ignorable code points, such as variation selectors;
// and as Unicode's compatibility caseless match compares text: NFKC and
// full case folding) is refused with
// ErrSelfApproval, and a blank one (only such characters) with
// ErrApproverUnnamed, since it could be the requester; both last, after
// the token and mission checks (so a wrong token is token_mismatch
// whoever presents it), consuming nothing, and recorded as
// ir.approval_invalid (v2: self_approval, approver_unnamed) for the
// approval's tenant, with attempted_by as presented: a requester holding
// the token and trying to grant its own request is what security
// alerting is for. An approval that names no requester has no one to
// compare with. The names are the caller's to give: the rule is as strong
// as the identities the caller passes.
type ConsumeApproval struct {
	ApprovalID string
	Token      string
	ConsumedBy string
	// MissionID is the mission the approval is used for (optional).
	MissionID string

	tenantID string
	now      time.Time
}

func (c ConsumeApproval) AggregateID() string { return c.ApprovalID }

func (c ConsumeApproval) Decide(a *approvalAgg) ([]any, error) {
	s := a.State
	invalid := func(rule *aggregates.RuleError, reason InvalidReason, msg string) error {
		// What the presenter sends is recorded bounded to what the schema
		// takes: a value it refuses would keep the attempt out of the log.
		ev := ApprovalInvalid{ApprovalID: a.ID, IRID: s.IRID, Reason: reason, AttemptedBy: boundText(c.ConsumedBy, maxTextLen)}
		switch reason {
		case ReasonTenantMismatch:
			ev.PresentedTenantID = boundText(c.tenantID, maxTextLen)
		case ReasonMissionMismatch:
			ev.PresentedMissionID = boundText(c.MissionID, maxTextLen)
		}
		// The alert belongs to the approval's tenant, not to whoever
		// presented it; an unknown approval has no tenant but the caller's.
		tenant := s.TenantID
		if !s.Created {
			tenant = c.tenantID
		}
		return aggregates.RefuseAndRecord(aggregates.Refuse(rule, "%s", msg), aggregates.Emit{Data: ev, TenantID: tenant})
	}
	switch {
	case !s.Created:
		return nil, invalid(ErrUnknownApproval, ReasonUnknownApproval, unknownApprovalMessage(a.ID))
	case s.TenantID != c.tenantID:
		return nil, invalid(ErrTenantMismatch, ReasonTenantMismatch, "presented by another tenant")
	case s.Consumed:
		return nil, invalid(ErrAlreadyConsumed, ReasonAlreadyConsumed, "consumed by "+s.ConsumedBy)
	case s.Expired:
		return nil, aggregates.Refuse(ErrExpired, "expired at %s", s.ExpiresAt.Format(time.RFC3339))
	case !c.now.Before(s.ExpiresAt):
		return nil, aggregates.RefuseAndRecord(aggregates.Refuse(ErrExpired, "expired at %s", s.ExpiresAt.Format(time.RFC3339)),
			ApprovalExpired{ApprovalID: a.ID, IRID: s.IRID, MissionID: s.MissionID, ExpiresAt: s.ExpiresAt})
	case subtle.ConstantTimeCompare([]byte(HashToken(c.Token)), []byte(s.TokenSHA256)) != 1:
		return nil, invalid(ErrTokenMismatch, ReasonTokenMismatch, "wrong token")
	case c.MissionID != "" && s.MissionID != "" && c.MissionID != s.MissionID:
		return nil, invalid(ErrApprovalMission, ReasonMissionMismatch, fmt.Sprintf("the approval was created for mission %s, not %s", s.MissionID, c.MissionID))
	}
	if rule, reason, msg := fourEyes(s.RequestedBy, c.ConsumedBy); rule != nil {
		return nil, invalid(rule, reason, msg)
	}
	mission := s.MissionID
	if mission == "" {
		mission = c.MissionID
	}
	return []any{ApprovalConsumed{ApprovalID: a.ID, IRID: s.IRID, MissionID: mission, ConsumedBy: c.ConsumedBy}}, nil
}

// unknownApprovalMessage is the refusal's message for an approval that
// does not exist, which another tenant's is to the presenter.
func unknownApprovalMessage(id string) string { return "no approval " + id }

// fourEyes returns the rule, the recorded reason and the message that
// refuse an approver who is, or may be, the approval's requester, or a
// nil rule.
func fourEyes(requestedBy, consumedBy string) (*aggregates.RuleError, InvalidReason, string) {
	requester := principal(requestedBy)
	rk, ak := principalKey(requestedBy), principalKey(consumedBy)
	switch {
	case rk == "":
		return nil, "", ""
	case ak == "":
		return ErrApproverUnnamed, ReasonApproverUnnamed, fmt.Sprintf("the approval was requested by %s; its approver says who they are (ConsumedBy)", requester)
	case rk == ak:
		return ErrSelfApproval, ReasonSelfApproval, fmt.Sprintf("%s requested the approval and cannot grant it", requester)
	}
	return nil, "", ""
}

// principal is a name as four eyes reads it: without the characters that
// show nothing, and without surrounding white space. Those are the control
// and format characters (U+200B ZERO WIDTH SPACE and the like) and the
// rest of Unicode's default-ignorable code points: variation selectors,
// U+034F COMBINING GRAPHEME JOINER, the Hangul fillers. Otherwise
// "planner\u200b" or "planner\u034f" would be another principal than
// "planner", though an approval's reader sees one name, and a requester
// could grant its own request; and an approver named only by such
// characters would name no one.
func principal(name string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) {
			return -1
		}
		return r
	}, name))
}

// principalKey is the form four eyes compares two names in: equal keys
// are one name to Unicode, compatibility-normalised and case-folded (NFKC
// and full case folding, Unicode's compatibility caseless match). It is
// the name as principal reads it, normalised, case-folded, normalised
// again (folding can undo a normalisation), and read by principal again
// (compatibility characters can become spaces). A name whose key is empty
// names no one. Otherwise "jose" followed by U+0301 COMBINING ACUTE ACCENT
// would be another principal than "José" with its precomposed é, though
// they are the same text, and so would "ｐｌａｎｎｅｒ" (fullwidth) be for
// "planner", or "STRAUß" for "strauss". Letters of other scripts that only
// look alike (a Cyrillic "а" for a Latin "a") stay other names: telling
// them apart is the identity provider's job, whose names the caller
// passes.
func principalKey(name string) string {
	folded := cases.Fold().String(norm.NFKC.String(principal(name)))
	return principal(norm.NFKC.String(folded))
}

// ExpireApproval records that an unused approval passed its expiry (a
// sweeper's command, run as the approval's tenant, which the approval's
// events name). Expiring an expired approval changes nothing.
//
// Another tenant's approval is, to this command, one that does not exist:
// refused as not found before anything else is looked at, with nothing
// written, so that a tenant sweeping an id does not learn that another
// tenant has an approval with it.
type ExpireApproval struct {
	ApprovalID string

	now      time.Time
	tenantID string // the caller's, set by the service
}

func (c ExpireApproval) AggregateID() string { return c.ApprovalID }

func (c ExpireApproval) Decide(a *approvalAgg) ([]any, error) {
	s := a.State
	switch {
	case !s.Created, s.TenantID != c.tenantID:
		return nil, a.NotFound()
	case s.Expired:
		return nil, nil
	case s.Consumed:
		return nil, aggregates.Refuse(ErrAlreadyConsumed, "consumed by %s before it expired", s.ConsumedBy)
	case c.now.Before(s.ExpiresAt):
		return nil, aggregates.Refuse(ErrNotYetExpired, "expires at %s", s.ExpiresAt.Format(time.RFC3339))
	}
	// The approval's tenant, which is the caller's.
	return []any{aggregates.Emit{Data: ApprovalExpired{ApprovalID: a.ID, IRID: s.IRID, MissionID: s.MissionID, ExpiresAt: s.ExpiresAt}, TenantID: s.TenantID}}, nil
}

var (
	_ aggregates.Command[ApprovalState] = CreateApproval{}
	_ aggregates.Command[ApprovalState] = ConsumeApproval{}
	_ aggregates.Command[ApprovalState] = ExpireApproval{}
)
