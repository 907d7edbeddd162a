package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore"
)

func (a *app) importCommand() *cobra.Command {
	var (
		restart   bool
		batchSize int
		versions  string
	)
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Append the envelopes of an NDJSON export, validated, idempotent by event id",
		Long: `Append the envelopes of an NDJSON file (as "eventstream export" writes
them) to the log, in file order. Every line is validated before anything is
written: a refused line is reported with its line number and nothing is
written (exit code 3). A UTF-8 byte order mark at the very start of the
input is ignored (anywhere else it is refused).

Import is idempotent by event id (every line needs one; "eventstream
append --file" takes lines without): events already stored with the same
content are not written again, so running it twice writes nothing the
second time. By default each stream keeps the versions of the file
(--expected-versions source): each event is appended at its own version, so
a stream that already holds other events, or a file that skips a version
of a stream, is a conflict (exit code 4) instead of a silent renumbering;
--expected-versions any appends after whatever the stream holds. An id
stored with other content is a conflict too (exit code 4), naming its
line.

Ctrl-C stops at a checkpoint (recorded in ./.eventstream/checkpoints);
running the same command again resumes there (--restart ignores it). An
import from standard input (-) or from a pipe (import <(gunzip -c …))
keeps no checkpoint: run again, it reads from the first line, and what
was stored is not written twice.
Timestamps are set by the target store when the events are written.`,
		Args: argsExactly(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.writes = true
			if batchSize < 1 || batchSize > eventstore.MaxBatchEvents {
				return usagef("--batch %d: want 1 to %d", batchSize, eventstore.MaxBatchEvents)
			}
			if versions != "source" && versions != "any" {
				return usagef("--expected-versions %q: want source or any", versions)
			}
			return a.runImport(cmd.Context(), args[0], importOptions{restart: restart, batch: batchSize, keepVersions: versions == "source"})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&restart, "restart", false, "ignore a checkpoint of an interrupted import and start from the first line")
	f.IntVar(&batchSize, "batch", 1000, fmt.Sprintf("most events per append (consecutive events of one stream; an append also stays within %d KiB)", eventstore.DefaultImportBatchBytes>>10))
	f.StringVar(&versions, "expected-versions", "source", "source: keep the file's stream versions; any: append after what each stream holds")
	return cmd
}

type importOptions struct {
	restart      bool
	batch        int
	keepVersions bool
}

// importCheckpoint is where an interrupted import resumes.
type importCheckpoint struct {
	File   string `json:"file"`
	Target string `json:"target"`
	Line   int    `json:"line"` // lines before this one are imported
	Events int    `json:"events"`
	// Of Events, those written and those found already stored, so that
	// the run that resumes reports the whole import, not only its part.
	Written int       `json:"written"`
	Present int       `json:"already_present"`
	Updated time.Time `json:"updated"`
}

func (a *app) runImport(ctx context.Context, path string, opts importOptions) error {
	name := path
	// Import reads its input twice (validate, then write): stdin, and a
	// path that is no regular file (a FIFO, or import <(gunzip -c …),
	// whose second read found the pipe drained and wrote nothing), are
	// spooled to a file first, and keep no checkpoint.
	spooled := false
	if st, err := os.Stat(path); path == "-" || err == nil && !st.Mode().IsRegular() {
		in, what := a.io.In, "stdin"
		if path != "-" {
			fh, err := os.Open(path)
			if err != nil {
				return usagef("%s: %v", path, errors.Unwrap(err))
			}
			defer fh.Close()
			in, what = fh, path
		}
		tmp, err := os.CreateTemp("", "eventstream-import-*.ndjson")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		if err := copyUntilDone(ctx, tmp, in); err != nil {
			if ctx.Err() != nil {
				return interruptedValidating()
			}
			return fmt.Errorf("read %s: %w", what, err)
		}
		path, name, spooled = tmp.Name(), what, true
	}
	st, err := os.Stat(path)
	if err != nil {
		return usagef("%s: %v", path, errors.Unwrap(err))
	}
	b, err := a.openStore(ctx, storeOptions{connectOptions: connectOptions{appName: "eventstream-import"}, logOnly: true})
	if err != nil {
		return err
	}
	defer b.Close()

	// Pass 1: every line must be a valid envelope before anything is
	// written.
	v, err := eventstore.NewValidator(b.Registry)
	if err != nil {
		return err
	}
	// An import keeps each event's id and is idempotent and resumable by
	// it: a line without one would be written again by every run (and by
	// a run resumed after an append cut off in flight), and an id given
	// twice is two events claiming one place in the log (ids are per
	// stream on a backend that checks them per stream).
	type idKey struct {
		stream string
		id     uuid.UUID
	}
	perStream := b.Store.Features().PerStreamIDs
	seen := map[idKey]int{}
	total := 0
	err = scanEnvelopes(path, name, 0, func(line int, e eventstore.Event) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.ID == uuid.Nil {
			return &lineError{File: name, Line: line, Err: &eventstore.ValidationError{Index: -1, Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, Pointer: "/id", Rule: "required",
				Message: "the envelope has no id: import keeps ids and is idempotent by them (append --file gives new ids)"}}
		}
		if e.Version < 0 {
			// 0 (or no version) is "append after what the stream holds";
			// a negative version is no place in a stream.
			return &lineError{File: name, Line: line, Err: &eventstore.ValidationError{Index: -1, Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, Pointer: "/version", Rule: "minimum",
				Message: fmt.Sprintf("version %d: a stream's versions start at 1 (leave it out to append after what the stream holds)", e.Version)}}
		}
		k := idKey{id: e.ID}
		if perStream {
			k.stream = e.Stream
		}
		if first, dup := seen[k]; dup {
			return &lineError{File: name, Line: line, Err: &eventstore.ValidationError{Index: -1, Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, Pointer: "/id", Rule: "unique-id",
				Message: fmt.Sprintf("id %s is also the id of line %d", e.ID, first)}}
		}
		seen[k] = line
		if _, err := v.Check(e.Stream, eventstore.Any, []eventstore.Event{e}); err != nil {
			return &lineError{File: name, Line: line, Err: err}
		}
		total++
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return interruptedValidating()
		}
		return err
	}
	if total == 0 {
		return &lineError{File: name, Line: 1, Err: &eventstore.ValidationError{Index: -1, Rule: "batch-size", Message: "no events to import"}}
	}

	// Pass 2: append per stream run, checkpointing as batches commit.
	target := a.targetIdentity(ctx, b)
	cpPath := ""
	var cp importCheckpoint
	if !spooled && b.Kind != storeMemory {
		abs, _ := filepath.Abs(path)
		sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d\x00%s", abs, st.Size(), st.ModTime().UnixNano(), target))
		cpPath = filepath.Join(a.workDir, ".eventstream", "checkpoints", "import-"+hex.EncodeToString(sum[:8])+".json")
		if !opts.restart {
			if raw, err := os.ReadFile(cpPath); err == nil && json.Unmarshal(raw, &cp) == nil && cp.Line > 0 {
				a.log.Info("resuming an interrupted import", "file", name, "from_line", cp.Line, "events_done", cp.Events)
			}
		}
		cp.File, cp.Target = abs, target
	}
	head, err := b.Store.Head(ctx)
	if err != nil {
		return err
	}
	// The progress is of this run: the events an interrupted run imported
	// are neither to do nor done now (counted done at the first instant,
	// they showed a rate far above the real one and an ETA far too short).
	p := a.newProgress("import", "events", int64(total-cp.Events))
	var (
		run      []eventstore.Event
		runLines []int // the line of each event of run
		written  = cp.Written
		present  = cp.Present
	)
	flush := func(nextLine int) error {
		if len(run) == 0 {
			return nil
		}
		w, pr, err := a.appendRun(ctx, b.Store, run, head, opts.keepVersions)
		if err != nil {
			// The run is appended in order, so the w+pr events counted
			// are its head: the error is at the next one, or, refused
			// for an id stored with other content, at the line of that id
			// (a batch is refused whole, at its first line).
			next := min(w+pr, len(run)-1)
			line := runLines[next]
			var de *eventstore.DuplicateEventError
			if errors.As(err, &de) {
				for i := next; i < len(run); i++ {
					if run[i].ID.String() == de.ID {
						line = runLines[i]
						break
					}
				}
			}
			if cp.Events > 0 || w > 0 || pr > 0 {
				// Earlier events are in: say exactly what was written.
				a.writes = false
				if line == runLines[next] {
					err = fmt.Errorf("%w (the %d events before this line are imported, none from this line on)", err, cp.Events+w+pr)
				} else {
					err = fmt.Errorf("%w (the %d events before line %d are imported, none from that line on)", err, cp.Events+w+pr, runLines[next])
				}
			}
			return &lineError{File: name, Line: line, Err: err}
		}
		written += w
		present += pr
		p.Add(len(run))
		cp.Events += len(run)
		cp.Written, cp.Present = written, present
		cp.Line = nextLine
		run, runLines = run[:0], runLines[:0]
		if cpPath != "" {
			if err := saveCheckpoint(cpPath, cp); err != nil {
				return err
			}
		}
		return nil
	}
	startLine := cp.Line
	err = scanEnvelopes(path, name, startLine, func(line int, e eventstore.Event) error {
		if len(run) > 0 && (run[0].Stream != e.Stream || len(run) >= opts.batch) {
			if err := flush(line); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		run = append(run, e)
		runLines = append(runLines, line)
		return nil
	})
	if err == nil {
		err = flush(1 << 62)
	}
	if err != nil {
		if ctx.Err() != nil {
			p.Finish("import interrupted")
			return withCode(ExitInterrupted, fmt.Errorf("import interrupted after %d of %d events; run the same command again to resume", cp.Events, total))
		}
		if cpPath != "" && errors.Is(err, eventstore.ErrUnavailable) {
			// An outage (exit 75): the checkpoint holds what committed.
			return fmt.Errorf("%w; run the same command again to resume", err)
		}
		return err
	}
	p.Finish("import done")
	if cpPath != "" {
		_ = os.Remove(cpPath)
	}
	out := struct {
		File    string `json:"file"`
		Events  int    `json:"events"`
		Written int    `json:"written"`
		Present int    `json:"already_present"`
	}{name, total, written, present}
	if a.asJSON {
		return a.printJSON(out)
	}
	a.stdoutf("imported %s: %d events, %d written, %d already present\n", name, total, written, present)
	return nil
}

// interruptedValidating is Ctrl-C before import wrote anything.
func interruptedValidating() error {
	return withCode(ExitInterrupted, errors.New("import interrupted before writing; nothing was written"))
}

// copyUntilDone copies r to w until r ends or ctx does. A read from a
// terminal or a pipe cannot be cut short: on ctx's end the copy is left
// to finish in the background, and the command, about to exit, does not
// wait for it.
func copyUntilDone(ctx context.Context, w io.Writer, r io.Reader) error {
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, r)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// appendRun appends consecutive events of one stream and counts those
// written now and those that were already stored (see countingStore).
//
// Events that keep their file versions (--expected-versions source) go
// through eventstore.Import, the same code as eventstore.Copy: each run at
// Exact(version-1), with the versions the target stores checked against
// the file's, and one event at a time when the target refuses the run
// because an earlier, interrupted import stored part of it (a duplicate id,
// or, on a backend that checks ids per stream, a wrong expected version).
// Import returns no results, so the store is wrapped to count them.
// Events appended after whatever the stream holds (--expected-versions any,
// or a line without a version) have no version to keep and are appended
// here at Any.
func (a *app) appendRun(ctx context.Context, s eventstore.Store, run []eventstore.Event, head eventstore.Position, keepVersions bool) (written, present int, err error) {
	cs := &countingStore{Store: s, head: head}
	batch := make([]eventstore.Event, len(run))
	for i, e := range run {
		batch[i] = e
		batch[i].Position, batch[i].Timestamp = eventstore.Position{}, time.Time{}
	}
	for len(batch) > 0 {
		versioned := keepVersions && batch[0].Version > 0
		n := 1
		for n < len(batch) && (keepVersions && batch[n].Version > 0) == versioned {
			n++
		}
		if versioned {
			_, err = eventstore.Import(ctx, cs, batch[:n], 0)
		} else {
			err = appendAny(ctx, cs, batch[:n])
		}
		if err != nil {
			return cs.written, cs.present, err
		}
		batch = batch[n:]
	}
	return cs.written, cs.present, nil
}

// appendAny appends a run at Any, in appends of at most
// eventstore.DefaultImportBatchBytes (as eventstore.Import bounds the runs
// that keep their versions): one append of the whole run, up to --batch
// events of up to 1 MiB each, could pass eventstore.MaxAppendBytes and be
// refused half way through an import whose every line was valid. An
// append is written whole or not at all beyond what the target already
// held (see appendAnyOnce).
func appendAny(ctx context.Context, s eventstore.Store, run []eventstore.Event) error {
	for len(run) > 0 {
		n := appendRunLength(run, eventstore.DefaultImportBatchBytes)
		if err := appendAnyOnce(ctx, s, run[:n]); err != nil {
			return err
		}
		run = run[n:]
	}
	return nil
}

// appendAnyOnce appends run at Any. If the target refuses it because an
// earlier, interrupted import stored its head (the refusal names run's
// first event, stored in its stream), the events stored there in a row
// are appended again one at a time, each an idempotent retry, and the
// rest goes the same way: as one append, or, if the target holds its
// head too (stored by another append, after another writer's event),
// again in two steps. Any other refusal (an id of run stored elsewhere
// with other content) refuses what is left of run whole: sent one event
// at a time, the events before that id were written, each alone, so a
// half-written batch.
func appendAnyOnce(ctx context.Context, s eventstore.Store, run []eventstore.Event) error {
	for len(run) > 0 {
		_, err := s.Append(ctx, run[0].Stream, eventstore.Any, run...)
		var de *eventstore.DuplicateEventError
		if err == nil || len(run) == 1 || !errors.As(err, &de) || de.ID != run[0].ID.String() || de.Stream != run[0].Stream {
			return err
		}
		// The first event is stored in this stream (or stored with other
		// content, and refused alone): its retry says at which version.
		res, err := s.Append(ctx, run[0].Stream, eventstore.Any, run[0])
		if err != nil {
			return err
		}
		got, err := s.ReadStream(ctx, run[0].Stream, res.Version(), len(run))
		if err != nil {
			return fmt.Errorf("read stream %q from version %d: %w", run[0].Stream, res.Version(), err)
		}
		stored := 1
		for stored < len(run) && stored < len(got) && got[stored].ID == run[stored].ID && got[stored].Version == got[0].Version+int64(stored) {
			stored++
		}
		for _, e := range run[1:stored] {
			if _, err := s.Append(ctx, e.Stream, eventstore.Any, e); err != nil {
				return err
			}
		}
		run = run[stored:]
	}
	return nil
}

// appendRunLength is how many events at the head of events (at least one)
// weigh at most maxBytes together (eventstore.AppendBytes, as Import cuts
// its appends).
func appendRunLength(events []eventstore.Event, maxBytes int) int {
	size := 0
	for i, e := range events {
		if size += eventstore.AppendBytes(e); size > maxBytes && i > 0 {
			return i
		}
	}
	return len(events)
}

// countingStore counts the events its successful appends return: written
// now, or already stored (an idempotent retry, which wrote nothing). A
// store that tells them apart (eventstore.WriteReporter: every backend)
// says which; otherwise an event after head, read before the first
// append, counts as written. Only the store can tell: events another
// writer stored after head (the same file imported twice at once) are
// after it too.
type countingStore struct {
	eventstore.Store
	head             eventstore.Position
	written, present int
}

func (c *countingStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if wr, ok := c.Store.(eventstore.WriteReporter); ok {
		res, wrote, err := wr.AppendReporting(ctx, stream, expected, events...)
		if err == nil {
			if wrote {
				c.written += len(res.Events)
			} else {
				c.present += len(res.Events)
			}
		}
		return res, err
	}
	res, err := c.Store.Append(ctx, stream, expected, events...)
	if err == nil {
		for _, e := range res.Events {
			if e.Position.Compare(c.head) <= 0 {
				c.present++
			} else {
				c.written++
			}
		}
	}
	return res, err
}

// utf8BOM is the byte order mark U+FEFF in UTF-8.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// trimLeadingBOM drops a UTF-8 byte order mark at the very start of the
// input (line n 1): as editors on Windows write it, it is not part of the
// text (RFC 8259 lets a parser ignore it), and a file saved with one reads
// like the same file without.
func trimLeadingBOM(n int, raw []byte) []byte {
	if n == 1 {
		return bytes.TrimPrefix(raw, utf8BOM)
	}
	return raw
}

// decodeLine is decodeEnvelope naming a byte order mark that starts a line
// other than the first: a character JSON does not allow outside a string,
// refused as what it is rather than as the 'ï' its first byte reads as.
func decodeLine(line []byte) (eventstore.Event, error) {
	e, err := decodeEnvelope(line)
	if err != nil && bytes.HasPrefix(line, utf8BOM) {
		err = &eventstore.ValidationError{Index: -1, Rule: "json",
			Message: "a byte order mark (U+FEFF, bytes EF BB BF) is allowed only at the very start of the input"}
	}
	return e, err
}

// scanEnvelopes calls fn for each envelope from line startLine on
// (1-based; 0 is the first line).
func scanEnvelopes(path, name string, startLine int, fn func(line int, e eventstore.Event) error) error {
	fh, err := os.Open(path)
	if err != nil {
		return usagef("%s: %v", name, errors.Unwrap(err))
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	n := 0
	for sc.Scan() {
		n++
		if n < startLine {
			continue
		}
		line := bytes.TrimSpace(trimLeadingBOM(n, sc.Bytes()))
		if len(line) == 0 {
			continue
		}
		e, err := decodeLine(line)
		if err != nil {
			return &lineError{File: name, Line: n, Err: err}
		}
		if e.Stream == "" {
			return &lineError{File: name, Line: n, Err: &eventstore.ValidationError{Index: -1, Pointer: "/stream", Rule: "required", Message: "the envelope has no stream"}}
		}
		if err := fn(n, e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &lineError{File: name, Line: n + 1, Err: &eventstore.ValidationError{Index: -1, Rule: "event-size", Message: fmt.Sprintf("line longer than %d bytes", maxLineBytes)}}
		}
		return fmt.Errorf("read %s: %w", name, err)
	}
	return nil
}

func saveCheckpoint(path string, cp importCheckpoint) error {
	cp.Updated = time.Now().UTC()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(cp, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// targetIdentity names the store an import writes to, so that a
// checkpoint is reused only for the same file and the same target.
func (a *app) targetIdentity(ctx context.Context, b *backend) string {
	switch b.Kind {
	case storeESDB:
		return "esdb " + redactURL(a.eventstoreURLOrEnv())
	case storePostgres:
		if b.PG != nil {
			return "postgres " + redactURL(b.DB.URL) + " schema " + b.PG.Schema()
		}
	}
	return b.Kind
}
