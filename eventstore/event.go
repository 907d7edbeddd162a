package eventstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Event is the Charter v1.0 envelope. On append the caller fills ID (or
// leaves it zero to have one generated), Type, Source, Target, Payload and
// Meta; the store fills Stream, Version, Position and Timestamp.
type Event struct {
	ID        uuid.UUID       `json:"id"`
	Type      string          `json:"type"`
	Stream    string          `json:"stream"`
	Version   int64           `json:"version"`
	Position  Position        `json:"position"`
	Source    string          `json:"source"`
	Target    string          `json:"target,omitempty"`
	Timestamp time.Time       `json:"timestamp"`
	Payload   json.RawMessage `json:"payload"`
	Meta      Meta            `json:"meta"`
}

// Meta carries the envelope's metadata. Extra holds free-form keys; they are
// stored and returned beside the named ones, as their JSON encoding gives
// them. An Extra key that names a named field is dropped: the field wins.
type Meta struct {
	SchemaVersion int            `json:"schema_version"`
	Producer      string         `json:"producer,omitempty"`
	TenantID      string         `json:"tenant_id"`
	CorrelationID string         `json:"correlation_id,omitempty"`
	CausationID   string         `json:"causation_id,omitempty"`
	Extra         map[string]any `json:"-"`
}

var metaKeys = map[string]bool{
	"schema_version": true, "producer": true, "tenant_id": true,
	"correlation_id": true, "causation_id": true,
}

// MarshalJSON writes the named keys and the free-form ones side by side.
func (m Meta) MarshalJSON() ([]byte, error) {
	out := make(map[string]any, len(m.Extra)+5)
	for k, v := range m.Extra {
		if !metaKeys[k] {
			out[k] = v
		}
	}
	out["schema_version"] = m.SchemaVersion
	out["tenant_id"] = m.TenantID
	if m.Producer != "" {
		out["producer"] = m.Producer
	}
	if m.CorrelationID != "" {
		out["correlation_id"] = m.CorrelationID
	}
	if m.CausationID != "" {
		out["causation_id"] = m.CausationID
	}
	return json.Marshal(out)
}

// AppendMeta appends m as the JSON object the stores keep, the same value
// MarshalJSON gives (key order aside, which jsonb neither keeps nor
// compares), at a fraction of its cost: the named keys are written
// directly, and only free-form values go through encoding/json.
// Projections that store the meta use it on every event.
func AppendMeta(dst []byte, m Meta) ([]byte, error) {
	dst = appendNamedMeta(dst, m)
	for k, v := range m.Extra {
		if metaKeys[k] {
			continue
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, &JSONError{Rule: "json", Message: fmt.Sprintf("meta key %q cannot be encoded: %v", k, err)}
		}
		dst = append(appendJSONString(append(dst, ','), k), ':')
		dst = append(dst, raw...)
	}
	return append(dst, '}'), nil
}

// appendNamedMeta appends the opening of m's JSON object and its named
// keys: schema_version and tenant_id always, the others when set. The
// caller appends the free-form keys and the closing brace.
func appendNamedMeta(dst []byte, m Meta) []byte {
	dst = append(dst, `{"schema_version":`...)
	dst = strconv.AppendInt(dst, int64(m.SchemaVersion), 10)
	dst = append(dst, `,"tenant_id":`...)
	dst = appendJSONString(dst, m.TenantID)
	for _, kv := range [...]struct{ k, v string }{{"producer", m.Producer}, {"correlation_id", m.CorrelationID}, {"causation_id", m.CausationID}} {
		if kv.v != "" {
			dst = append(appendJSONString(append(dst, ','), kv.k), ':')
			dst = appendJSONString(dst, kv.v)
		}
	}
	return dst
}

// UnmarshalJSON reads the named keys and keeps every other key in Extra.
func (m *Meta) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*m = Meta{}
	str := func(k string, dst *string) error {
		if v, ok := raw[k]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, dst); err != nil {
				return fmt.Errorf("meta.%s: %w", k, err)
			}
		}
		return nil
	}
	if v, ok := raw["schema_version"]; ok {
		if err := json.Unmarshal(v, &m.SchemaVersion); err != nil {
			return fmt.Errorf("meta.schema_version: %w", err)
		}
	}
	for k, dst := range map[string]*string{
		"producer": &m.Producer, "tenant_id": &m.TenantID,
		"correlation_id": &m.CorrelationID, "causation_id": &m.CausationID,
	} {
		if err := str(k, dst); err != nil {
			return err
		}
	}
	for k, v := range raw {
		if metaKeys[k] {
			continue
		}
		if m.Extra == nil {
			m.Extra = map[string]any{}
		}
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		var x any
		if err := d.Decode(&x); err != nil {
			return fmt.Errorf("meta.%s: %w", k, err)
		}
		m.Extra[k] = x
	}
	return nil
}

// Position is a place in the whole log. PostgreSQL fills both halves with
// the same gapless counter; EventStoreDB fills them with the commit and
// prepare positions of its transaction file. Positions compare by Commit,
// then Prepare. The zero Position is before every event.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// Start is the position before the first event of the log.
var Start = Position{}

// Pos returns the position of a backend whose log is one counter.
func Pos(n uint64) Position { return Position{Commit: n, Prepare: n} }

// Compare returns -1, 0 or +1 as p is before, at or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.Commit < q.Commit:
		return -1
	case p.Commit > q.Commit:
		return 1
	case p.Prepare < q.Prepare:
		return -1
	case p.Prepare > q.Prepare:
		return 1
	}
	return 0
}

// IsZero reports whether p is Start.
func (p Position) IsZero() bool { return p == Position{} }

// String renders a single-counter position as its number and a split
// position as "commit/prepare"; ParsePosition reads both forms.
func (p Position) String() string {
	if p.Commit == p.Prepare {
		return strconv.FormatUint(p.Commit, 10)
	}
	return strconv.FormatUint(p.Commit, 10) + "/" + strconv.FormatUint(p.Prepare, 10)
}

// ParsePosition reads "N" or "COMMIT/PREPARE".
func ParsePosition(s string) (Position, error) {
	s = strings.TrimSpace(s)
	c, p, split := strings.Cut(s, "/")
	commit, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("eventstore: position %q: want N or COMMIT/PREPARE", s)
	}
	if !split {
		return Pos(commit), nil
	}
	prepare, err := strconv.ParseUint(p, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("eventstore: position %q: want N or COMMIT/PREPARE", s)
	}
	return Position{Commit: commit, Prepare: prepare}, nil
}

// MarshalJSON writes a single-counter position as a JSON number and a split
// one as a "commit/prepare" string.
func (p Position) MarshalJSON() ([]byte, error) {
	if p.Commit == p.Prepare {
		return strconv.AppendUint(nil, p.Commit, 10), nil
	}
	return json.Marshal(p.String())
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Position) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	q, err := ParsePosition(s)
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// ExpectedVersion is the optimistic-concurrency condition of an append:
// Any, NoStream, StreamExists, or an exact stream version (Exact(0) is the
// same as NoStream: the stream has no events).
type ExpectedVersion int64

const (
	// Any appends whatever the stream's version is.
	Any ExpectedVersion = -1
	// NoStream appends only if the stream has no events yet.
	NoStream ExpectedVersion = -2
	// StreamExists appends only if the stream has at least one event.
	StreamExists ExpectedVersion = -3
)

// Exact expects the stream to be at version v (its last event's version).
func Exact(v int64) ExpectedVersion { return ExpectedVersion(v) }

// String renders the condition as the CLI spells it.
func (e ExpectedVersion) String() string {
	switch e {
	case Any:
		return "any"
	case NoStream:
		return "no-stream"
	case StreamExists:
		return "exists"
	}
	return strconv.FormatInt(int64(e), 10)
}

// ParseExpectedVersion reads "any", "no-stream", "exists" or a version >= 0.
func ParseExpectedVersion(s string) (ExpectedVersion, error) {
	switch s {
	case "any", "":
		return Any, nil
	case "no-stream":
		return NoStream, nil
	case "exists", "stream-exists":
		return StreamExists, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, &ValidationError{Index: -1, Pointer: "/expected_version", Rule: "expected-version",
			Message: fmt.Sprintf("expected version %q: want any, no-stream, exists or a version >= 0", s)}
	}
	return Exact(n), nil
}

// Satisfied reports whether a stream at version current (0 when it has no
// events) meets the condition.
func (e ExpectedVersion) Satisfied(current int64) bool {
	switch e {
	case Any:
		return true
	case NoStream:
		return current == 0
	case StreamExists:
		return current > 0
	}
	return int64(e) == current
}

// AppendResult is what an append stored: the events with their stream
// version, global position and timestamp filled in.
type AppendResult struct {
	Stream string
	Events []Event
}

// Version is the stream's version after the append.
func (r AppendResult) Version() int64 {
	if len(r.Events) == 0 {
		return 0
	}
	return r.Events[len(r.Events)-1].Version
}

// Position is the global position of the append's last event.
func (r AppendResult) Position() Position {
	if len(r.Events) == 0 {
		return Position{}
	}
	return r.Events[len(r.Events)-1].Position
}
