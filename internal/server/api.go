package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/projections"
)

// eventIn is one event of an append request.
type eventIn struct {
	ID      uuid.UUID       `json:"id"`
	Type    string          `json:"type"`
	Source  string          `json:"source"`
	Target  string          `json:"target"`
	Payload json.RawMessage `json:"payload"`
	Meta    eventstore.Meta `json:"meta"`
}

// appendIn is the body of POST /streams/{stream}/events: either
// {"expected_version": ..., "events": [...]} or a single event object.
type appendIn struct {
	ExpectedVersion json.RawMessage `json:"expected_version"`
	Events          []eventIn       `json:"events"`
}

// appendedOut is one stored event of an append response.
type appendedOut struct {
	ID       string              `json:"id"`
	Type     string              `json:"type"`
	Version  int64               `json:"version"`
	Position eventstore.Position `json:"position"`
}

type appendOut struct {
	Stream   string              `json:"stream"`
	Version  int64               `json:"version"`
	Position eventstore.Position `json:"position"`
	Events   []appendedOut       `json:"events"`
}

func badRequest(rule, ptr, format string, args ...any) error {
	return &eventstore.ValidationError{Index: -1, Pointer: ptr, Rule: rule, Message: fmt.Sprintf(format, args...)}
}

// parseExpected reads the expected version from the Expected-Version
// header or the body's expected_version (a number or "any", "no-stream",
// "exists"); both given must agree.
func parseExpected(header string, field json.RawMessage) (eventstore.ExpectedVersion, error) {
	var fromField string
	if len(field) > 0 && string(field) != "null" {
		var n json.Number
		if err := json.Unmarshal(field, &fromField); err != nil {
			if err := json.Unmarshal(field, &n); err != nil {
				return 0, badRequest("expected-version", "/expected_version", "expected_version: want a version number or \"any\", \"no-stream\", \"exists\"")
			}
			fromField = n.String()
		}
	}
	header = strings.TrimSpace(header)
	if header != "" && fromField != "" && header != fromField {
		return 0, badRequest("expected-version", "/expected_version", "the Expected-Version header (%s) and expected_version (%s) disagree", header, fromField)
	}
	v := header
	if v == "" {
		v = fromField
	}
	return eventstore.ParseExpectedVersion(v)
}

// decodeAppend decodes an append body strictly: malformed JSON, unknown
// keys and duplicate keys are refused, and so is a batch of more than
// maxEvents events.
func decodeAppend(body []byte, maxEvents int) (appendIn, error) {
	var in appendIn
	doc, err := eventstore.DecodeJSON(body)
	if err != nil {
		return in, err
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return in, badRequest("type", "/", "the body must be a JSON object: one event, or {\"events\": [...]}")
	}
	// Counted before the events are decoded: a body of tiny events ({}
	// is 3 bytes) would otherwise cost hundreds of times its size in
	// structs before being refused. encoding/json matches keys without
	// regard to case, so "Events" fills the batch too.
	for k, v := range obj {
		if a, ok := v.([]any); ok && strings.EqualFold(k, "events") && len(a) > maxEvents {
			return in, badRequest("batch-size", "/events", "%d events in one request; this server takes at most %d", len(a), maxEvents)
		}
	}
	if err := checkKeys(obj); err != nil {
		return in, err
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if _, batch := obj["events"]; batch {
		if err := d.Decode(&in); err != nil {
			return in, badRequest("envelope", "/", "not an append request: %v", err)
		}
		return in, nil
	}
	var one struct {
		eventIn
		ExpectedVersion json.RawMessage `json:"expected_version"`
	}
	if err := d.Decode(&one); err != nil {
		return in, badRequest("envelope", "/", "not an event: %v", err)
	}
	return appendIn{ExpectedVersion: one.ExpectedVersion, Events: []eventIn{one.eventIn}}, nil
}

// The keys of an append body, spelled as documented.
var (
	eventKeys = map[string]bool{"id": true, "type": true, "source": true, "target": true, "payload": true, "meta": true}
	// oneKeys: the body of a single event may carry the expected version.
	oneKeys   = map[string]bool{"id": true, "type": true, "source": true, "target": true, "payload": true, "meta": true, "expected_version": true}
	batchKeys = map[string]bool{"expected_version": true, "events": true}
)

// checkKeys refuses a key of the body, or of a batch's event, that is not
// one of the documented names exactly. encoding/json, which decodes the
// body next, matches keys without regard to case and keeps the last of
// "type" and "TYPE": it would store a value that readers of the body as
// JSON (a proxy, a log, the duplicate-key check) take for an unknown key.
func checkKeys(obj map[string]any) error {
	ptr := strings.NewReplacer("~", "~0", "/", "~1")
	if _, batch := obj["events"]; !batch {
		if k, bad := unknownKey(obj, oneKeys); bad {
			return badRequest("envelope", "/"+ptr.Replace(k), "not an event: unknown key %q", k)
		}
		return nil
	}
	if k, bad := unknownKey(obj, batchKeys); bad {
		return badRequest("envelope", "/"+ptr.Replace(k), "not an append request: unknown key %q", k)
	}
	events, _ := obj["events"].([]any)
	for i, e := range events {
		ev, _ := e.(map[string]any)
		if k, bad := unknownKey(ev, eventKeys); bad {
			return &eventstore.ValidationError{Index: i, Pointer: "/" + ptr.Replace(k), Rule: "envelope", Message: fmt.Sprintf("unknown key %q", k)}
		}
	}
	return nil
}

// unknownKey returns the first, in sorted order, of obj's keys that is not
// known (so that the refusal does not change from one request to the next).
func unknownKey(obj map[string]any, known map[string]bool) (string, bool) {
	first, bad := "", false
	for k := range obj {
		if !known[k] && (!bad || k < first) {
			first, bad = k, true
		}
	}
	return first, bad
}

func (s *Server) appendEvents(w http.ResponseWriter, r *http.Request, p Principal) {
	stream := r.PathValue("stream")
	if c, ok := domain.CategoryOf(stream); ok {
		refuseModuleStream(w, stream, c)
		return
	}
	body, err := io.ReadAll(r.Body)
	var mb *http.MaxBytesError
	if err != nil && !errors.As(err, &mb) {
		// The client sent less than it announced (it went away): its
		// mistake, not an outage of the database nor a defect here.
		s.refuseAppend(w, r, badRequest("body", "", "the request body could not be read in full"), nil)
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	in, err := decodeAppend(body, s.cfg.Limits.MaxBatchEvents)
	if err != nil {
		s.refuseAppend(w, r, err, nil)
		return
	}
	expected, err := parseExpected(r.Header.Get("Expected-Version"), in.ExpectedVersion)
	if err != nil {
		s.refuseAppend(w, r, err, in.Events)
		return
	}
	// Every event gets its id here, not in the store: an append whose
	// outcome the server cannot tell (past the request deadline, a lost
	// connection) may still commit, and the client can retry it without
	// writing it twice only with the same ids, which the error returns.
	events := make([]eventstore.Event, len(in.Events))
	ids := make([]string, len(in.Events))
	for i, e := range in.Events {
		if err := refuseStampKeys(i, e.Meta); err != nil {
			s.refuseAppend(w, r, err, in.Events)
			return
		}
		m := e.Meta
		switch {
		case m.TenantID == "" && !p.Operator():
			m.TenantID = p.Tenant
		case m.TenantID != "" && !p.Sees(m.TenantID):
			writeError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("event %d: this token writes only tenant %q's events", i, p.Tenant), nil)
			return
		}
		if m.SchemaVersion == 0 {
			if m.SchemaVersion = s.cfg.Registry.Latest(e.Type); m.SchemaVersion == 0 {
				m.SchemaVersion = 1 // unknown type: validation says so
			}
		}
		if m.Producer == "" {
			// The token's name, or its key id when it has none: a bare
			// "http/" would say nothing.
			m.Producer = "http/" + cmp.Or(p.Name, p.KeyID)
		}
		// Stamped on every attempt alike: a retry of these ids by the
		// same token is the same content, which the store answers with
		// the original result; by another token it differs in the stamp
		// (the key id, whatever the names), and the store refuses it as
		// an id stored with other content. Events that an earlier release
		// stored with less of the stamp are recognised below
		// (appendAsStoredBefore).
		if m.Extra == nil {
			m.Extra = map[string]any{}
		}
		m.Extra[AppendedByKey] = p.Name
		m.Extra[AppendedByKeyKey] = p.KeyID
		src := e.Source
		if src == "" {
			src = "http"
		}
		id := e.ID
		if id == uuid.Nil {
			id = eventstore.NewID()
		}
		ids[i] = id.String()
		events[i] = eventstore.Event{ID: id, Type: e.Type, Source: src, Target: e.Target, Payload: e.Payload, Meta: m}
	}
	if err := eventstore.CheckStreamID(stream); err != nil {
		s.refuseAppend(w, r, err, in.Events)
		return
	}
	res, err := s.appendOwned(r, p, stream, expected, events)
	var de *eventstore.DuplicateEventError
	if errors.As(err, &de) && de.Stream == stream {
		if res2, err2, tried := s.appendAsStoredBefore(r, p, stream, expected, events); tried {
			res, err = res2, err2
		}
	}
	if errors.Is(err, errNotOwner) {
		refuseNotOwner(w, stream)
		return
	}
	if errors.As(err, &de) && !p.Operator() && de.Stream != stream {
		// The id is stored in another stream, perhaps another tenant's:
		// refuse without naming it.
		writeError(w, http.StatusConflict, "duplicate", fmt.Sprintf("event id %s is already stored in another stream", de.ID), nil)
		return
	}
	if err != nil {
		s.writeAppendError(w, r, err, ids)
		return
	}
	out := appendOut{Stream: res.Stream, Version: res.Version(), Position: res.Position()}
	for _, e := range res.Events {
		out.Events = append(out.Events, appendedOut{ID: e.ID.String(), Type: e.Type, Version: e.Version, Position: e.Position})
	}
	w.Header().Set("Location", "/streams/"+url.PathEscape(stream))
	writeJSON(w, http.StatusCreated, out)
}

// refuseAppend answers an append request the API refuses before any
// append call, and counts a validation refusal among the store's in
// eventstream_validation_refusals_total (Metrics.refusedBeforeAppend).
func (s *Server) refuseAppend(w http.ResponseWriter, r *http.Request, err error, events []eventIn) {
	s.cfg.Metrics.refusedBeforeAppend(err, events)
	s.writeStoreError(w, r, err)
}

// AppendedByKey is the free-form meta key in which the API records the
// name of the token that appended an event (Principal.Name). meta.producer
// is what the client says it is, and the client may set it to anything;
// meta.appended_by is what the server authenticated. Appends made outside
// the API (the library, the CLI) do not carry it.
const AppendedByKey = "appended_by"

// AppendedByKeyKey is the free-form meta key in which the API records the
// key id of the token that appended an event (Principal.KeyID), beside its
// name in AppendedByKey. Names are optional and not unique, so the name
// alone may not tell two tokens apart; the key id does, and it is the
// hash prefix that `eventstream tokens list` shows for the token.
const AppendedByKeyKey = "appended_by_key"

// stampKeys are the meta keys only the server writes.
var stampKeys = [...]string{AppendedByKey, AppendedByKeyKey}

// earlierStamps are the stamps that releases before the current one put
// on the events they appended, as the stamp keys each left out: the
// release that stamped appended_by only (no appended_by_key), and the
// releases before the stamp (neither key).
var earlierStamps = [...][]string{{AppendedByKeyKey}, {AppendedByKey, AppendedByKeyKey}}

// appendAsStoredBefore answers an append that the store refused as a
// duplicate (events are this request's, stamped for p) when its events
// are stored as an earlier release stamped them: with no stamp, or with
// appended_by only. Those differ from this request's events only in the
// stamp keys the earlier release did not write, so the store took the
// retry for an id reused with other content. The append is made again
// with each earlier stamp in turn (p's name kept where that release
// stamped it, never another token's), and the store, comparing under its
// own lock as for any retry, answers the first that is the same content
// with the original result. tried is false when none is: the caller
// keeps the first refusal, which names the event that differs.
//
// Nothing can be written twice, nor written unstamped: the refusal says
// that one of these ids is stored in this stream, the log keeps its
// events for ever, and an append holding a stored id either is a retry of
// stored events, answered with their original result and writing nothing,
// or is refused whole (eventstore.Store). The store does the comparison,
// not a read and compare here that a concurrent append could overtake.
// Each attempt is an append call, counted as such in
// eventstream_appends_total: a duplicate that is none of these costs two
// more, both refused.
//
// An event that the current release stamped for another token is not
// taken for a retry of it: the stored key id names who appended it, and
// the server does not answer another token as though it had appended it.
// An event stored without the stamp names nobody, so any token that may
// write the stream gets its original result, as it did before the stamp.
func (s *Server) appendAsStoredBefore(r *http.Request, p Principal, stream string, expected eventstore.ExpectedVersion, events []eventstore.Event) (res eventstore.AppendResult, err error, tried bool) {
	for _, absent := range earlierStamps {
		earlier := make([]eventstore.Event, len(events))
		for i, e := range events {
			e.Meta.Extra = maps.Clone(e.Meta.Extra)
			for _, k := range absent {
				delete(e.Meta.Extra, k)
			}
			earlier[i] = e
		}
		res, err = s.appendOwned(r, p, stream, expected, earlier)
		if errors.Is(err, eventstore.ErrDuplicateEvent) {
			continue
		}
		// The original result, or an error that leaves the outcome
		// unknown (the database went away): the client retries.
		return res, err, true
	}
	return eventstore.AppendResult{}, nil, false
}

// refuseStampKeys refuses event i when its meta carries a key the server
// stamps (stampKeys): a client that could send one would sign its events
// with another token's name or key id. Keys that differ from one only in
// case are refused too: encoding/json, which readers of the meta may
// decode it with, takes them for the same key. Of several, the first in
// sorted order is named, so that the refusal does not change from one
// request to the next.
func refuseStampKeys(i int, m eventstore.Meta) error {
	first, stamp := "", ""
	for k := range m.Extra {
		for _, s := range stampKeys {
			if strings.EqualFold(k, s) && (first == "" || k < first) {
				first, stamp = k, s
			}
		}
	}
	if first == "" {
		return nil
	}
	// What folds onto a stamp key is ASCII letters and '_', or the
	// Kelvin sign (U+212A) for the k of appended_by_key: never '~' or
	// '/', so first needs no escaping in a JSON pointer.
	what := "name"
	if stamp == AppendedByKeyKey {
		what = "key id"
	}
	return &eventstore.ValidationError{Index: i, Pointer: "/meta/" + first, Rule: "reserved",
		Message: fmt.Sprintf("meta key %q is reserved: the server sets meta.%s to the %s of the token that appends the event", first, stamp, what)}
}

// refuseModuleStream refuses a raw append into a stream a domain module
// owns (domain.CategoryOf): the module decides every event of its
// aggregates' streams against their state, and an event appended raw
// there (a mission.started without governance's approval, an
// ir.validated_pass) would be read as one it decided. The refusal comes
// before the body is read and the stream's owner is looked at, for every
// token, the operator's included: it writes nothing, and says nothing of
// whether, or whose, the stream is. Operators repair such streams with the
// eventstream CLI, which appends to the store directly.
func refuseModuleStream(w http.ResponseWriter, stream string, c domain.StreamCategory) {
	msg := fmt.Sprintf("stream %q is a %s aggregate's stream (%s…): only module %s writes it, through its commands (%s), which check its rules; "+
		"the API appends to it for no token (an operator repairs it with the eventstream CLI)",
		stream, c.Aggregate, c.Prefix, c.Module, c.Commands)
	writeError(w, http.StatusForbidden, "module_stream", msg, func(e *apiError) {
		e.Stream, e.Module = stream, c.Module
	})
}

// errNotOwner: the stream holds events and is not the appending tenant's.
var errNotOwner = errors.New("stream of another tenant")

// refuseNotOwner answers an append to a stream that is not the token's
// tenant's. Stream ids are shared by every tenant, so the refusal itself
// tells that the id is taken (an append to a free id would succeed);
// nothing else about the stream may show. The answer depends on the
// request's stream id only: not on the stream's owner, version or events,
// nor on the expected version or the events sent (docs/operations/tenants.md,
// "Stream ids are shared").
func refuseNotOwner(w http.ResponseWriter, stream string) {
	msg := fmt.Sprintf("stream %q is not this tenant's: this token cannot append to it; stream ids are shared by every tenant, choose another", stream)
	writeError(w, http.StatusConflict, "stream_taken", msg, func(e *apiError) { e.Stream = stream })
}

// appendOwned appends for p. A stream belongs to the tenant of its first
// event; another tenant neither writes to it nor learns anything of it but
// that its id is taken (errNotOwner). When the stream is empty at the
// check, "any" is appended as "no stream", so that another tenant creating
// the stream at the same moment makes this append conflict (and be checked
// again) instead of landing in that tenant's stream; an expected version
// that needs the stream to exist conflicts at once, for the same reason.
//
// A conflict of an append made on a stream that was empty at the check is
// never returned as the store reported it: the stream was created
// meanwhile, perhaps by another tenant, and the store's error carries that
// stream's version. The stream is checked again instead.
func (s *Server) appendOwned(r *http.Request, p Principal, stream string, expected eventstore.ExpectedVersion, events []eventstore.Event) (eventstore.AppendResult, error) {
	if p.Operator() {
		return s.cfg.Store.Append(r.Context(), stream, expected, events...)
	}
	for attempt := 0; ; attempt++ {
		owner, exists, err := s.streamOwner(r, stream)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		if exists && owner != p.Tenant {
			return eventstore.AppendResult{}, errNotOwner
		}
		if !exists && !expected.Satisfied(0) {
			// The stream was empty when checked, so the condition failed
			// then. Appending anyway would succeed only if another tenant
			// created the stream meanwhile, and land in its stream.
			return eventstore.AppendResult{}, &eventstore.ConcurrencyError{Stream: stream, Expected: expected, Actual: 0}
		}
		exp := expected
		if !exists {
			exp = eventstore.NoStream
		}
		res, err := s.cfg.Store.Append(r.Context(), stream, exp, events...)
		if !exists && errors.Is(err, eventstore.ErrConcurrency) {
			if attempt < 3 {
				continue // created meanwhile: check whose it is
			}
			// Empty at every check, yet not at the append: report the
			// conflict as of the check, as above.
			return eventstore.AppendResult{}, &eventstore.ConcurrencyError{Stream: stream, Expected: expected, Actual: 0}
		}
		return res, err
	}
}

// streamOwner returns the tenant of a stream's first event, and whether
// the stream has any. A stream whose first event names no tenant (written
// around the API's and the store's checks) exists and is no tenant's.
func (s *Server) streamOwner(r *http.Request, stream string) (owner string, exists bool, err error) {
	first, err := s.cfg.Store.ReadStream(r.Context(), stream, 1, 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if len(first) == 0 {
		return "", false, nil
	}
	return first[0].Meta.TenantID, true, nil
}

// intParam reads a non-negative integer query parameter.
func intParam(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("query", "", "%s=%q: want a number >= 0", name, v)
	}
	return n, nil
}

func (s *Server) readStream(w http.ResponseWriter, r *http.Request, p Principal) {
	stream := r.PathValue("stream")
	from, err := intParam(r, "from", 1)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	limit, err := intParam(r, "limit", int64(s.cfg.Limits.MaxPageEvents))
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	limit = min(max(limit, 1), int64(s.cfg.Limits.MaxPageEvents))
	if err := eventstore.CheckStreamID(stream); err != nil {
		writeError(w, http.StatusNotFound, "not_found", "stream not found", nil)
		return
	}
	if !p.Operator() {
		owner, _, err := s.streamOwner(r, stream)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		if owner != p.Tenant {
			writeError(w, http.StatusNotFound, "not_found", "stream not found", nil)
			return
		}
	}
	events, full, err := readStreamPage(r.Context(), s.cfg.Store, stream, max(from, 1), int(limit))
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "stream not found", nil)
		return
	}
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	out := struct {
		Stream string             `json:"stream"`
		Events []eventstore.Event `json:"events"`
		Next   *int64             `json:"next,omitempty"`
	}{Stream: stream, Events: []eventstore.Event{}}
	for _, e := range events {
		if p.Sees(e.Meta.TenantID) {
			out.Events = append(out.Events, e)
		}
	}
	if full {
		n := events[len(events)-1].Version + 1
		out.Next = &n
	}
	writeJSON(w, http.StatusOK, out)
}

// firstStreamChunk is how many events readStreamPage asks for first,
// before it knows how big they are.
const firstStreamChunk = 16

// readStreamPage reads up to limit events of stream from version from,
// stopping once they hold eventstore.MaxPageBytes (a stream read is not
// cut by the store: an aggregate's load needs all of it). It reads in
// chunks sized by the events seen so far, so that a page of small events
// is one or two reads and one of near-maximum events holds about
// MaxPageBytes, not a gigabyte. full is true when a next page may follow.
func readStreamPage(ctx context.Context, st eventstore.Store, stream string, from int64, limit int) (events []eventstore.Event, full bool, err error) {
	size, chunk := 0, min(limit, firstStreamChunk)
	for {
		got, err := st.ReadStream(ctx, stream, from, chunk)
		if err != nil && (len(events) == 0 || !errors.Is(err, eventstore.ErrStreamNotFound)) {
			return nil, false, err
		}
		for i := range got {
			size += eventstore.PageBytes(&got[i])
		}
		events = append(events, got...)
		switch {
		case len(got) < chunk:
			return events, false, nil
		case len(events) == limit || size >= eventstore.MaxPageBytes:
			return events, true, nil
		}
		from = events[len(events)-1].Version + 1
		per := max(size/len(events), 1)
		chunk = min(limit-len(events), max((eventstore.MaxPageBytes-size)/per, 1))
	}
}

func (s *Server) readAll(w http.ResponseWriter, r *http.Request, p Principal) {
	from := eventstore.Start
	if v := r.URL.Query().Get("from"); v != "" {
		pos, err := eventstore.ParsePosition(v)
		// No log reaches 2^63 (PostgreSQL's positions are bigint), and a
		// backend that converts a larger one to int64 would read from the
		// start instead.
		if err != nil || pos.Commit > math.MaxInt64 || pos.Prepare > math.MaxInt64 {
			s.writeStoreError(w, r, badRequest("query", "", "from=%q: want a position (at most %d)", v, int64(math.MaxInt64)))
			return
		}
		from = pos
	}
	limit, err := intParam(r, "limit", 100)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	limit = min(max(limit, 1), int64(s.cfg.Limits.MaxPageEvents))
	// The scan is bounded: a page of a filter that matches little ends
	// early, not End, and the client follows Next.
	opts := eventstore.ReadAllOptions{From: from, Limit: int(limit), ScanLimit: s.cfg.Limits.MaxScanEvents}
	if t := r.URL.Query()["type"]; len(t) > 0 {
		opts.Types = t
	}
	if !p.Operator() {
		opts.TenantID = p.Tenant
	} else if t := r.URL.Query().Get("tenant"); t != "" {
		opts.TenantID = t
	}
	page, err := s.cfg.Store.ReadAll(r.Context(), opts)
	if err != nil {
		s.writeStoreError(w, r, err)
		return
	}
	out := struct {
		Events []eventstore.Event  `json:"events"`
		Next   eventstore.Position `json:"next"`
		End    bool                `json:"end"`
	}{Events: []eventstore.Event{}, Next: page.Next, End: page.End}
	for _, e := range page.Events {
		if p.Sees(e.Meta.TenantID) { // a backend that filters in the client still filters
			out.Events = append(out.Events, e)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// projectionLag is a projection's entry of GET /projections.
type projectionLag struct {
	projections.Lag
	// LagEventsAtLeast: LagEvents, counted over a tenant's events, is a
	// lower bound (measureTenantLag stopped at one of its bounds).
	LagEventsAtLeast bool `json:"lag_events_at_least,omitempty"`
}

func (s *Server) projectionStatus(w http.ResponseWriter, r *http.Request, p Principal) {
	out := struct {
		Projections []projectionLag `json:"projections"`
	}{Projections: []projectionLag{}}
	if s.cfg.Runtime != nil {
		lags, err := s.cfg.Runtime.Lag(r.Context())
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		atLeast, err := s.forPrincipal(r.Context(), p, lags, nil)
		if err != nil {
			s.writeStoreError(w, r, err)
			return
		}
		for i, l := range lags {
			out.Projections = append(out.Projections, projectionLag{Lag: l, LagEventsAtLeast: atLeast[i]})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// forPrincipal cuts the projections' lags down to what p may see: an
// operator sees them whole; a tenant sees nothing counted over other
// tenants' events, which would tell it how much they write and when.
//
//   - The error text may quote an event: a tenant does not see it.
//   - Parked is, for a tenant, the count of its own parked events in the
//     active generation (a count of every tenant's would tell it that
//     another has events parked, and how many).
//   - LagEvents and LagSeconds are, for a tenant, how many of its own
//     events are after the projection's position and the age of the
//     oldest: whether its newest events are in the read models yet,
//     which is what a tenant asks the figure. They are counted within
//     bounds (measureTenantLag), past which LagEvents is a lower bound.
//   - EventsPerSecond and Errors count every tenant's events and cannot be
//     cut down to one: a tenant gets 0.
//   - Position, Head and RebuildPosition stay: they are positions in the
//     one log every tenant shares, which a tenant learns anyway from its
//     own appends' answers and from GET /events' next (the head, once a
//     read reaches the end). That the log grows, and how fast, is not
//     hidden by positions that are global; what the events are, whose, and
//     how they fare is.
//
// parked is the runtime's list of parked events, or nil to read it when
// needed. atLeast says of each of lags whether its LagEvents is a lower
// bound.
func (s *Server) forPrincipal(ctx context.Context, p Principal, lags []projections.Lag, parked []projections.Parked) (atLeast []bool, err error) {
	atLeast = make([]bool, len(lags))
	if p.Operator() {
		return atLeast, nil
	}
	if parked == nil {
		if parked, err = s.cfg.Runtime.ListParked(ctx, ""); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	measured := map[eventstore.Position]tenantLag{} // projections at one position share a count
	for i := range lags {
		l := &lags[i]
		l.LastError = ""
		l.Parked = 0
		for _, x := range parked {
			if p.Sees(x.TenantID) && x.Projection == l.Projection && x.Generation == l.Generation {
				l.Parked++
			}
		}
		m, ok := measured[l.Position]
		if !ok {
			var err error
			if m, err = s.measureTenantLag(ctx, p, l.Position, now); err != nil {
				return nil, err
			}
			measured[l.Position] = m
		}
		l.LagEvents, l.LagSeconds, atLeast[i] = m.events, m.seconds, m.atLeast
		l.EventsPerSecond, l.Errors = 0, 0
	}
	return atLeast, nil
}

// The bounds of a tenant's lag. The log has no index on the tenant, so a
// read filtered by tenant scans every event up to its page's last match:
// from a projection far behind (a rebuild, an outage) that is the whole
// backlog, on every request of any tenant. A tenant's lag is counted over
// unfiltered pages instead, and over a window of the log after the
// projection's position; past either bound the count is a lower bound.
const (
	// tenantLagCap bounds how many of a tenant's events its lag counts.
	tenantLagCap = 1000
	// tenantLagWindow bounds how many events of the log, every tenant's,
	// the count looks at after the projection's position.
	tenantLagWindow = 10_000
	// tenantLagPage is the size of a page of the count, and
	// tenantLagPages bounds how many pages it reads: a page of large
	// events stops at eventstore.MaxPageBytes, so the bytes read are
	// bounded too.
	tenantLagPage  = 1000
	tenantLagPages = tenantLagWindow / tenantLagPage
)

// tenantLag is a projection's lag over one tenant's events.
type tenantLag struct {
	events  int64
	seconds float64
	// atLeast: a bound stopped the count before the end of the log, so
	// events is a lower bound and seconds the age of the oldest event
	// counted (0: none counted).
	atLeast bool
}

// measureTenantLag counts p's events among the tenantLagWindow events
// after pos (up to tenantLagCap of them) and the age of the oldest at now.
func (s *Server) measureTenantLag(ctx context.Context, p Principal, pos eventstore.Position, now time.Time) (tenantLag, error) {
	var out tenantLag
	from, looked := pos, 0
	for pages := 0; ; pages++ {
		if pages == tenantLagPages || looked >= tenantLagWindow {
			out.atLeast = true
			return out, nil
		}
		page, err := s.cfg.Store.ReadAll(ctx, eventstore.ReadAllOptions{From: from, Limit: min(tenantLagPage, tenantLagWindow-looked)})
		if err != nil {
			return out, fmt.Errorf("measure a tenant's lag: %w", err)
		}
		for _, e := range page.Events {
			// From is inclusive.
			if e.Position.Compare(pos) <= 0 {
				continue
			}
			looked++
			if !p.Sees(e.Meta.TenantID) {
				continue
			}
			if out.events == 0 {
				out.seconds = max(now.Sub(e.Timestamp).Seconds(), 0)
			}
			if out.events++; out.events == tenantLagCap {
				out.atLeast = true
				return out, nil
			}
		}
		if page.End || page.Next.Compare(from) <= 0 {
			return out, nil
		}
		from = page.Next
	}
}

func (s *Server) listSchemas(w http.ResponseWriter, r *http.Request, p Principal) {
	type item struct {
		Type     string `json:"type"`
		Versions []int  `json:"versions"`
	}
	out := struct {
		Schemas []item `json:"schemas"`
	}{}
	for _, t := range s.cfg.Registry.Types() {
		out.Schemas = append(out.Schemas, item{t, s.cfg.Registry.Versions(t)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getSchema(w http.ResponseWriter, r *http.Request, p Principal) {
	typ, v := r.PathValue("type"), strings.TrimPrefix(r.PathValue("version"), "v")
	version := 0
	if v == "latest" {
		version = s.cfg.Registry.Latest(typ)
	} else if n, err := strconv.Atoi(v); err == nil {
		version = n
	}
	src, ok := s.cfg.Registry.Source(typ, version)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no schema %s v%s", typ, v), nil)
		return
	}
	w.Header().Set("Content-Type", "application/schema+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(src)
}
