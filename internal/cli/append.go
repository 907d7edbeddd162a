package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore"
)

// appendOutput is what append prints per stored event (--json keys are
// part of the contract: stream, version, position, id).
type appendOutput struct {
	Stream   string              `json:"stream"`
	Version  int64               `json:"version"`
	Position eventstore.Position `json:"position"`
	ID       string              `json:"id"`
	Type     string              `json:"type,omitempty"`
}

// appendFileOutput is what append --file prints per stream: the lines of
// the stream in the file, of them those written now and those found
// already stored (a file appended again writes nothing), and where its
// last one is stored. It has no id: a stream of the file is one or many
// events (--json: stream, events, written, already_present, version,
// position); read the stream for their ids.
type appendFileOutput struct {
	Stream   string              `json:"stream"`
	Events   int                 `json:"events"`
	Written  int                 `json:"written"`
	Present  int                 `json:"already_present"`
	Version  int64               `json:"version"`
	Position eventstore.Position `json:"position"`
}

func appendOutputOf(e eventstore.Event) appendOutput {
	return appendOutput{Stream: e.Stream, Version: e.Version, Position: e.Position, ID: e.ID.String(), Type: e.Type}
}

type appendFlags struct {
	stream, typ, expected, tenant, correlation, causation string
	source, target, producer, id, data, meta, file        string
	schemaVersion                                         int
}

func (a *app) appendCommand() *cobra.Command {
	var f appendFlags
	cmd := &cobra.Command{
		Use:   "append (--stream S --type T --data JSON|@FILE|- | --file EVENTS.ndjson)",
		Short: "Validate and append one event, or a file of envelopes",
		Long: `Validate and append one event:

  eventstream append --stream course-42 --type course.generation.requested \
      --tenant acme --data '{"course_id":"…","topic":"Go","attempt":1,"language":"en"}'

prints the stored stream, version, global position and id (--json: an
object with keys stream, version, position, id). --schema-version defaults
to the type's newest schema; --expected-version is any (default),
no-stream, exists or a version number.

Or append a file (or - for stdin) of envelopes, one JSON object per line
(keys id, type, stream, source, target, payload, meta — the Charter v1.0
envelope; "stream" may be left out when --stream is given):

  eventstream append --file events.ndjson

Every line is validated before anything is written. Events are appended
per stream, in file order, one atomic batch per stream (split every 10,000
events, and where a batch would pass 64 MiB); a line that fails
validation is reported with its line number and nothing is written. Lines with ids already stored with the same content
are skipped, so a file can be appended again safely, and a file appended
again after lines were added to it writes only the new lines, each
stream's right after its stored ones (a stream another writer appended to
since is a conflict, exit code 4). An id stored with other content is a
conflict (exit code 4) naming its line, and so is a stored line after new
lines of its stream; nothing of that stream is written. A UTF-8 byte order
mark at the very start of the file is ignored (anywhere else it is
refused). It prints, per stream, the number of its lines in the file, how
many of them it wrote and how many were already stored, and the version
and position of its last event (--json: one object per stream, with keys
stream, events, written, already_present, version, position; no id, as a
stream may take many events: read the stream for them).`,
		Args: argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.writes = true
			if f.file != "" {
				return a.appendFile(cmd, f)
			}
			return a.appendOne(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.stream, "stream", "", "stream id")
	fl.StringVar(&f.typ, "type", "", "event type, e.g. course.generation.requested")
	fl.IntVar(&f.schemaVersion, "schema-version", 0, "payload schema version (default: the type's newest)")
	fl.StringVar(&f.expected, "expected-version", "any", "any, no-stream, exists, or the stream's current version")
	fl.StringVar(&f.tenant, "tenant", "", "tenant id (meta.tenant_id; default $EVENTSTREAM_TENANT)")
	fl.StringVar(&f.correlation, "correlation-id", "", "correlation id (meta.correlation_id)")
	fl.StringVar(&f.causation, "causation-id", "", "causation id (meta.causation_id)")
	fl.StringVar(&f.source, "source", "cli", "producing module (envelope source)")
	fl.StringVar(&f.target, "target", "", "target module (optional)")
	fl.StringVar(&f.producer, "producer", "eventstream-cli", "meta.producer")
	fl.StringVar(&f.id, "id", "", "event id (UUID; default: a new one). Retrying with the same id is idempotent")
	fl.StringVar(&f.data, "data", "", "payload: a JSON object, @FILE, or - for stdin")
	fl.StringVar(&f.meta, "meta", "", "extra meta keys as a JSON object")
	fl.StringVar(&f.file, "file", "", "append the envelopes of an NDJSON file (- for stdin)")
	return cmd
}

func (a *app) appendOne(cmd *cobra.Command, f appendFlags) error {
	switch {
	case f.stream == "":
		return usagef("--stream is required (or --file)")
	case f.typ == "":
		return usagef("--type is required")
	case f.data == "":
		return usagef("--data is required: a JSON object, @FILE or -")
	}
	expected, err := eventstore.ParseExpectedVersion(f.expected)
	if err != nil {
		return usagef("--expected-version %q: want any, no-stream, exists or a version >= 0", f.expected)
	}
	payload, err := a.readData(f.data)
	if err != nil {
		return err
	}
	e := eventstore.Event{Type: f.typ, Source: f.source, Target: f.target, Payload: payload}
	if f.id != "" {
		id, err := uuid.Parse(f.id)
		if err != nil {
			return usagef("--id %q: not a UUID", f.id)
		}
		e.ID = id
	}
	tenant := f.tenant
	if tenant == "" {
		tenant = a.getenv("EVENTSTREAM_TENANT")
	}
	e.Meta = eventstore.Meta{SchemaVersion: f.schemaVersion, Producer: f.producer, TenantID: tenant, CorrelationID: f.correlation, CausationID: f.causation}
	if f.meta != "" {
		var extra map[string]any
		d := json.NewDecoder(strings.NewReader(f.meta))
		d.UseNumber()
		if err := d.Decode(&extra); err != nil {
			return usagef("--meta: want a JSON object: %v", err)
		}
		e.Meta.Extra = extra
	}
	b, err := a.openStore(cmd.Context(), storeOptions{connectOptions: connectOptions{appName: "eventstream-append"}, logOnly: true})
	if err != nil {
		return err
	}
	defer b.Close()
	if e.Meta.SchemaVersion == 0 {
		e.Meta.SchemaVersion = b.Registry.Latest(f.typ)
		if e.Meta.SchemaVersion == 0 {
			e.Meta.SchemaVersion = 1 // unknown type: let validation say so
		}
	}
	res, err := b.Store.Append(cmd.Context(), f.stream, expected, e)
	if err != nil {
		return err
	}
	out := appendOutputOf(res.Events[0])
	if a.asJSON {
		out.Type = ""
		return a.printJSON(out)
	}
	a.stdoutf("appended %s to %s: version %d, position %s, id %s\n", out.Type, out.Stream, out.Version, out.Position, out.ID)
	return nil
}

// readData reads --data: inline JSON, @FILE or - (stdin).
func (a *app) readData(v string) (json.RawMessage, error) {
	var b []byte
	var err error
	switch {
	case v == "-":
		b, err = io.ReadAll(io.LimitReader(a.io.In, eventstore.MaxEventBytes+1))
	case strings.HasPrefix(v, "@"):
		b, err = os.ReadFile(v[1:])
		if err != nil {
			return nil, usagef("--data %s: %v", v, errors.Unwrap(err))
		}
	default:
		b = []byte(v)
	}
	if err != nil {
		return nil, fmt.Errorf("read --data: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, usagef("--data is empty")
	}
	return json.RawMessage(b), nil
}

// fileLine is one envelope of an NDJSON file and where it came from.
type fileLine struct {
	line  int
	event eventstore.Event
}

// streamBatch is the events of one stream in file order.
type streamBatch struct {
	stream string
	lines  []fileLine
}

func (a *app) appendFile(cmd *cobra.Command, f appendFlags) error {
	if f.typ != "" || f.data != "" || f.id != "" {
		return usagef("--file takes the type, payload and id from each line; drop --type, --data and --id")
	}
	expected, err := eventstore.ParseExpectedVersion(f.expected)
	if err != nil {
		return usagef("--expected-version %q: want any, no-stream, exists or a version >= 0", f.expected)
	}
	name, r, closeFn, err := a.openInput(f.file)
	if err != nil {
		return err
	}
	defer closeFn()
	batches, err := readEnvelopes(name, r, f.stream)
	if err != nil {
		return err
	}
	b, err := a.openStore(cmd.Context(), storeOptions{connectOptions: connectOptions{appName: "eventstream-append"}, logOnly: true})
	if err != nil {
		return err
	}
	defer b.Close()
	// Validate everything first so that a bad line writes nothing at all.
	v, err := eventstore.NewValidator(b.Registry)
	if err != nil {
		return err
	}
	chunks := make([][][]fileLine, len(batches))
	for i, sb := range batches {
		if chunks[i], err = checkedChunks(v, name, sb, expected); err != nil {
			return err
		}
	}
	// countingStore tells what the store wrote from what it held (an
	// idempotent retry); the head is for a store that cannot tell.
	head, err := b.Store.Head(cmd.Context())
	if err != nil {
		return err
	}
	var outs []appendFileOutput
	for i, sb := range batches {
		exp := expected
		var last eventstore.AppendResult
		cs := &countingStore{Store: b.Store, head: head}
		for j, chunk := range chunks[i] {
			res, held, err := appendChunk(cmd.Context(), b.Store, cs, sb.stream, exp, chunk)
			if err != nil {
				if len(outs) > 0 || j > 0 || held > 0 {
					// The error is placed on the line of the event it
					// names (a refused id), which may come after the
					// first line of this append: name that one.
					a.writes = false
					err = fmt.Errorf("%w (streams before %s are appended; %s from line %d on is not)", err, sb.stream, sb.stream, chunk[held].line)
				}
				return placeError(name, chunk, err)
			}
			exp, last = eventstore.Exact(res.Version()), res
		}
		o := appendFileOutput{Stream: sb.stream, Events: len(sb.lines), Written: cs.written, Present: cs.present, Version: last.Version(), Position: last.Position()}
		outs = append(outs, o)
		if a.asJSON {
			if err := a.printJSON(o); err != nil {
				return err
			}
		}
	}
	if a.asJSON {
		return nil
	}
	t := a.newTable("STREAM", "EVENTS", "WRITTEN", "PRESENT", "VERSION", "POSITION")
	for _, o := range outs {
		t.row(o.Stream, o.Events, o.Written, o.Present, o.Version, o.Position)
	}
	return t.flush()
}

// checkedChunks validates one stream's lines and splits them into the
// appends the store takes: at most MaxBatchEvents events, and at most
// MaxAppendBytes of payloads and encoded metas, each. The validator itself
// says where the bytes run out (the event that passes the limit), so a
// stream is split only where one append could not carry it; before, a
// stream of valid events that passed MaxAppendBytes together was refused
// whole, naming the line of its first event.
func checkedChunks(v *eventstore.Validator, name string, sb *streamBatch, expected eventstore.ExpectedVersion) ([][]fileLine, error) {
	var out [][]fileLine
	for lines := sb.lines; len(lines) > 0; {
		// The payloads alone first, as Check weighs them before it
		// checks the events (that refusal names no event to cut at).
		n, payloads := 0, 0
		for n < len(lines) && n < eventstore.MaxBatchEvents && (n == 0 || payloads+len(lines[n].event.Payload) <= eventstore.MaxAppendBytes) {
			payloads += len(lines[n].event.Payload)
			n++
		}
		chunk := lines[:n]
		_, err := v.Check(sb.stream, expected, eventsOf(chunk))
		var ve *eventstore.ValidationError
		if errors.As(err, &ve) && ve.Rule == "batch-bytes" && ve.Index > 0 {
			// The events before it are checked and fit: they are one
			// append, and the rest is checked from that event on.
			chunk, err = chunk[:ve.Index], nil
		}
		if err != nil {
			return nil, placeError(name, chunk, err)
		}
		out = append(out, chunk)
		lines = lines[len(chunk):]
	}
	return out, nil
}

// appendChunk appends one chunk of a stream's lines at expected, through
// cs, which counts them. A file appended again after lines were added to
// it has chunks that hold stored lines and new ones together, which the
// store refuses whole as a duplicate (it takes stored events only as a
// retry of them alone). So, refused for an id of the chunk's first line
// stored in this stream, it finds how many lines at the head of the chunk
// the stream holds in a row, appends those again (a retry: counted
// present, or refused for a line whose content differs), and the rest
// right after them, at Exact of the last one's version, as the next chunk
// of a stream goes after the one before. Refused for the id of a later
// line, that line alone says whether it is stored with other content (the
// store's refusal) or with the same, and then lines before it that are
// not stored cannot go in file order: a conflict naming it. held is how
// many lines at the head of chunk are stored when it returns.
func appendChunk(ctx context.Context, s eventstore.Store, cs *countingStore, stream string, expected eventstore.ExpectedVersion, chunk []fileLine) (last eventstore.AppendResult, held int, err error) {
	for held < len(chunk) {
		rest := chunk[held:]
		res, err := cs.Append(ctx, stream, expected, eventsOf(rest)...)
		var de *eventstore.DuplicateEventError
		if err == nil || len(rest) == 1 || !errors.As(err, &de) || de.Stream != stream {
			if err == nil {
				held = len(chunk)
			}
			return res, held, err
		}
		at := slices.IndexFunc(rest, func(l fileLine) bool { return l.event.ID.String() == de.ID })
		if at < 0 {
			return res, held, err
		}
		// The id is stored in this stream, so this append of its event
		// alone writes nothing: it is a retry, or refused.
		probe, perr := s.Append(ctx, stream, eventstore.Any, rest[at].event)
		if perr != nil {
			return last, held, perr
		}
		if at > 0 {
			return last, held, withCode(ExitConflict, &storedAfterNewError{ID: de.ID, Stream: stream, Version: probe.Version()})
		}
		got, rerr := s.ReadStream(ctx, stream, probe.Version(), len(rest))
		if rerr != nil {
			return last, held, fmt.Errorf("read stream %q from version %d: %w", stream, probe.Version(), rerr)
		}
		n := 1
		for n < len(rest) && n < len(got) && got[n].ID == rest[n].event.ID && got[n].Version == got[0].Version+int64(n) {
			n++
		}
		// Stored, so a retry whatever the expected version: counted
		// present, or refused naming a line whose content differs.
		if last, err = cs.Append(ctx, stream, eventstore.Any, eventsOf(rest[:n])...); err != nil {
			return last, held, err
		}
		held += n
		expected = eventstore.Exact(last.Version())
	}
	return last, held, nil
}

// storedAfterNewError is a line of append --file stored already, with the
// same content, after lines of its stream that are not: they cannot be
// appended before it (exit 4, a conflict with what is stored).
type storedAfterNewError struct {
	ID      string
	Stream  string
	Version int64
}

func (e *storedAfterNewError) Error() string {
	return fmt.Sprintf("event id %s is already stored in stream %q, with the same content, at version %d, but lines of %s before it in this append are not, and cannot go before it: a file appended again may only have lines added after its stored ones (a line without an id is given a new one each time)",
		e.ID, e.Stream, e.Version, e.Stream)
}

func eventsOf(lines []fileLine) []eventstore.Event {
	out := make([]eventstore.Event, len(lines))
	for i, l := range lines {
		out[i] = l.event
	}
	return out
}

// placeError puts an append error on the line of the event it names.
func placeError(file string, chunk []fileLine, err error) error {
	var ve *eventstore.ValidationError
	if errors.As(err, &ve) && ve.Index >= 0 && ve.Index < len(chunk) {
		return &lineError{File: file, Line: chunk[ve.Index].line, Err: err}
	}
	var se *storedAfterNewError
	if errors.As(err, &se) {
		for _, l := range chunk {
			if l.event.ID.String() == se.ID {
				return &lineError{File: file, Line: l.line, Err: err}
			}
		}
	}
	var de *eventstore.DuplicateEventError
	if errors.As(err, &de) {
		for _, l := range chunk {
			if l.event.ID.String() == de.ID {
				return &lineError{File: file, Line: l.line, Err: err}
			}
		}
	}
	if len(chunk) > 0 && (errors.Is(err, eventstore.ErrConcurrency) || errors.Is(err, eventstore.ErrValidation)) {
		return &lineError{File: file, Line: chunk[0].line, Err: err}
	}
	return err
}

// openInput opens a file argument, "-" being stdin.
func (a *app) openInput(path string) (string, io.Reader, func(), error) {
	if path == "-" {
		return "stdin", a.io.In, func() {}, nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return "", nil, nil, usagef("%s: %v", path, errors.Unwrap(err))
	}
	return path, fh, func() { fh.Close() }, nil
}

// maxLineBytes bounds one NDJSON line: an event's payload and meta plus
// the envelope around them.
const maxLineBytes = eventstore.MaxEventBytes + 64<<10

// readEnvelopes reads NDJSON envelopes and groups them per stream, keeping
// the order of first appearance. A line that is not an envelope is a
// validation refusal naming the line.
func readEnvelopes(name string, r io.Reader, defaultStream string) ([]*streamBatch, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	byStream := map[string]*streamBatch{}
	var order []*streamBatch
	n := 0
	for sc.Scan() {
		n++
		// As import: a byte order mark at the very start is ignored,
		// anywhere else refused as what it is.
		line := bytes.TrimSpace(trimLeadingBOM(n, sc.Bytes()))
		if len(line) == 0 {
			continue
		}
		e, err := decodeLine(line)
		if err != nil {
			return nil, &lineError{File: name, Line: n, Err: err}
		}
		if e.Stream == "" {
			e.Stream = defaultStream
		}
		if e.Stream == "" {
			return nil, &lineError{File: name, Line: n, Err: &eventstore.ValidationError{Index: -1, Pointer: "/stream", Rule: "required", Message: "no stream on the line and no --stream given"}}
		}
		sb := byStream[e.Stream]
		if sb == nil {
			sb = &streamBatch{stream: e.Stream}
			byStream[e.Stream] = sb
			order = append(order, sb)
		}
		sb.lines = append(sb.lines, fileLine{line: n, event: e})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &lineError{File: name, Line: n + 1, Err: &eventstore.ValidationError{Index: -1, Rule: "event-size",
				Message: fmt.Sprintf("line longer than %d bytes", maxLineBytes)}}
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(order) == 0 {
		return nil, &eventstore.ValidationError{Index: -1, Rule: "batch-size", Message: name + ": no events"}
	}
	return order, nil
}

// decodeEnvelope reads one line strictly: unknown keys and malformed JSON
// are refusals, not silently dropped.
func decodeEnvelope(line []byte) (eventstore.Event, error) {
	var e eventstore.Event
	if _, err := eventstore.DecodeJSON(line); err != nil {
		return e, err
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(&e); err != nil {
		return e, &eventstore.ValidationError{Index: -1, Rule: "envelope", Message: "not an envelope: " + err.Error()}
	}
	return e, nil
}
