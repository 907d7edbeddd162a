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

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore"
)

func (a *app) exportCommand() *cobra.Command {
	var (
		from, to, output string
		restart          bool
	)
	cmd := &cobra.Command{
		Use:   "export [--from POSITION] [--to POSITION] [--output FILE] > events.ndjson",
		Short: "Write the log (or a range of it) as NDJSON envelopes",
		Long: `Write the whole log, or the positions from --from to --to (both
inclusive), as one JSON envelope per line, in log order: the input of
"eventstream import", which moves history between stores.

With --output FILE, an interrupted export (Ctrl-C) resumes when run again:
it continues after the last complete line of FILE (--restart starts over).
It resumes only a FILE that holds the beginning of the same range (its
first line is the range's first event, its last line an event of the log
within the range); a FILE holding another export is started over, with a
warning, and a FILE that is no export at all is refused.
--output /dev/stdout >> FILE resumes FILE too (> FILE empties it first).
Progress goes to stderr: a bar on a terminal, log lines otherwise.

With --output FILE (a regular file) and --json, export prints one object
once done:
{"file", "events" (written by this run), "last_position", "resumed"};
not when FILE is where stdout goes (--output /dev/stdout > FILE), where
the events are the output.`,
		Args: argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var fromPos, toPos eventstore.Position
			var err error
			if from != "" {
				if fromPos, err = eventstore.ParsePosition(from); err != nil {
					return usagef("--from: %v", err)
				}
			}
			if to != "" {
				if toPos, err = eventstore.ParsePosition(to); err != nil {
					return usagef("--to: %v", err)
				}
				if from != "" && toPos.Compare(fromPos) < 0 {
					return usagef("--to %s is before --from %s", toPos, fromPos)
				}
			}
			w := a.io.Out
			var fh *os.File
			var held *exportedLines
			if output != "" && output != "-" {
				fh, held, err = openExportFile(output, restart)
				if err != nil {
					return err
				}
				defer fh.Close()
				w = fh
			}
			b, err := a.openStore(cmd.Context(), storeOptions{connectOptions: connectOptions{appName: "eventstream-export"}, logOnly: true})
			if err != nil {
				return err
			}
			defer b.Close()
			var resumeAfter *eventstore.Position
			if held != nil {
				why, err := held.notOfRange(cmd.Context(), b.Store, fromPos, toPos, to != "")
				if err != nil {
					return err
				}
				if why == "" {
					resumeAfter = &held.last.Position
				} else {
					a.log.Warn("starting the export over: the file holds another export", "file", output, "reason", why)
					if err := fh.Truncate(0); err != nil {
						return err
					}
					if _, err := fh.Seek(0, io.SeekStart); err != nil {
						return err
					}
				}
			}
			if resumeAfter != nil {
				fromPos = *resumeAfter
				a.log.Info("resuming the export", "file", output, "after", resumeAfter.String())
			}
			n, last, err := a.export(cmd.Context(), b.Store, w, fromPos, resumeAfter, toPos, to != "")
			if fh != nil && resumable(fh) {
				if serr := fh.Sync(); err == nil && serr != nil {
					err = serr
				}
			}
			if err != nil {
				// Run again, the same command resumes after FILE's last
				// line; but where FILE is also stdout (> FILE), the shell
				// empties it before export reads it back: >> keeps it.
				again := "run the same command again to resume"
				if fh != nil && a.isStdout(fh) {
					again = "to resume, run the same command again with >> in place of > (> empties the file before export can read it back)"
				}
				if cmd.Context().Err() != nil && fh != nil && resumable(fh) {
					return withCode(ExitInterrupted, fmt.Errorf("export interrupted after %d events (last position %s); %s", n, last, again))
				}
				if errors.Is(err, eventstore.ErrUnavailable) && fh != nil && resumable(fh) {
					// An outage (exit 75): FILE holds what was read.
					return fmt.Errorf("export stopped after %d events (last position %s): %w; %s", n, last, err, again)
				}
				return err
			}
			if fh != nil && resumable(fh) && a.asJSON && !a.isStdout(fh) {
				// Written to a regular FILE (not /dev/stdout), the events
				// leave stdout free for the result (to stdout, the events
				// are the output: also a FILE that stdout is redirected
				// to, where the result would land in the export).
				if n == 0 && resumeAfter != nil {
					last = *resumeAfter // nothing new: FILE still ends there
				}
				return a.printJSON(exportOutput{File: output, Events: n, Last: last, Resumed: resumeAfter != nil})
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "first global position to export (default: the start)")
	f.StringVar(&to, "to", "", "last global position to export (default: the head when the export starts)")
	f.StringVarP(&output, "output", "o", "", "write to FILE instead of stdout (resumable)")
	f.BoolVar(&restart, "restart", false, "with --output: overwrite FILE instead of resuming")
	return cmd
}

// isStdout reports whether fh is the file stdout writes to: --output
// /dev/stdout (or FILE) with stdout redirected to that regular file. The
// events written there through fh are the output; anything printed to
// stdout would be written into the same file, over its first event (>)
// or after its last (>>).
func (a *app) isStdout(fh *os.File) bool {
	fs, err := fh.Stat()
	return err == nil && a.stdoutIs(fs)
}

// stdoutIs reports whether fi is the file stdout writes to (see isStdout;
// schemas docs -o /dev/stdout > FILE too).
func (a *app) stdoutIs(fi os.FileInfo) bool {
	out, ok := a.io.Out.(*os.File)
	if !ok {
		return false
	}
	ss, err := out.Stat()
	return err == nil && os.SameFile(fi, ss)
}

// exportOutput is what export --output FILE --json prints.
type exportOutput struct {
	File    string              `json:"file"`
	Events  int                 `json:"events"`
	Last    eventstore.Position `json:"last_position"`
	Resumed bool                `json:"resumed"`
}

// exportedLine is where a line of an export file was in the log.
type exportedLine struct {
	Position eventstore.Position
	ID       uuid.UUID
}

// exportedLines are the first and the last complete line of an export file.
type exportedLines struct{ first, last exportedLine }

// notOfRange says why the file's lines are not the beginning of an export
// of from..to (bounded: to is --to; otherwise the range runs to the head),
// or "" when they are and the export resumes after the last one.
//
// They are when the first line is the range's first event (the first
// event of the log at or after from: the same position and id) and the
// last line is an event of the log within the range. The log is append
// only and an export writes it in position order, so an earlier run of
// the same command left exactly such a file, and the lines after its last
// one are what it did not write. Before, an explicit --from always
// started over, since nothing told a file of this range from one of
// another (resuming after the last line of an export from elsewhere in
// the log gives a file that is neither); without --from the file was
// resumed whatever range it held.
func (h *exportedLines) notOfRange(ctx context.Context, s eventstore.Store, from, to eventstore.Position, bounded bool) (string, error) {
	at := func(p eventstore.Position) (*eventstore.Event, error) {
		page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{From: p, Limit: 1})
		if err != nil || len(page.Events) == 0 {
			return nil, err
		}
		return &page.Events[0], nil
	}
	first, err := at(from)
	if err != nil {
		return "", err
	}
	switch {
	case first == nil || bounded && first.Position.Compare(to) > 0:
		return fmt.Sprintf("the range has no events; the file starts at %s", h.first.Position), nil
	case first.Position != h.first.Position || first.ID != h.first.ID:
		return fmt.Sprintf("its first line is the event at %s; the range starts with the event at %s", h.first.Position, first.Position), nil
	case h.last.Position.Compare(h.first.Position) < 0:
		return fmt.Sprintf("its last line, at %s, is before its first, at %s", h.last.Position, h.first.Position), nil
	case bounded && h.last.Position.Compare(to) > 0:
		return fmt.Sprintf("its last line, at %s, is past --to %s", h.last.Position, to), nil
	}
	last, err := at(h.last.Position)
	if err != nil {
		return "", err
	}
	if last == nil || last.Position != h.last.Position || last.ID != h.last.ID {
		return fmt.Sprintf("its last line, at %s, is not the log's event there", h.last.Position), nil
	}
	return "", nil
}

// openExportFile opens FILE for an export. Unless restart says otherwise,
// it keeps the complete lines already there (dropping a partial line after
// them) and returns the first and the last one; the caller resumes after
// the last one if they are of the range it exports, and otherwise empties
// the file.
func openExportFile(path string, restart bool) (*os.File, *exportedLines, error) {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		// A device or a pipe (/dev/null, /dev/stdout into gzip, a FIFO):
		// nothing there to resume after. Reading it back would never end
		// on a pipe, and truncating it means nothing.
		fh, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, nil, usagef("--output %s: %v", path, errors.Unwrap(err))
		}
		return fh, nil, nil
	}
	if restart {
		fh, err := os.Create(path)
		if err != nil {
			return nil, nil, usagef("--output %s: %v", path, errors.Unwrap(err))
		}
		return fh, nil, nil
	}
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, usagef("--output %s: %v", path, errors.Unwrap(err))
	}
	fail := func(err error) (*os.File, *exportedLines, error) {
		fh.Close()
		return nil, nil, err
	}
	// Only the first and the last complete line matter: they are read
	// alone, so that resuming the export of a large log does not read
	// the whole file into memory.
	st, err := fh.Stat()
	if err != nil {
		return fail(err)
	}
	if st.Size() == 0 {
		return fh, nil, nil
	}
	// The last complete line must be an exported event; a partial line
	// after it (an export killed mid-write) is dropped.
	end, err := completeLinesEnd(fh, st.Size())
	if err != nil {
		return fail(err)
	}
	notExport := usagef("--output %s: it is not an export of eventstream; use --restart to overwrite it", path)
	if end == 0 {
		return fail(notExport)
	}
	lastRaw, err := lastFileLine(fh, end)
	if err != nil {
		return fail(err)
	}
	firstRaw, err := bufio.NewReaderSize(io.NewSectionReader(fh, 0, end), 64<<10).ReadBytes('\n')
	if err != nil {
		return fail(err)
	}
	firstRaw = bytes.TrimSuffix(firstRaw, []byte("\n"))
	line := func(raw []byte) (exportedLine, bool) {
		var l struct {
			Position *eventstore.Position `json:"position"`
			ID       string               `json:"id"`
		}
		if err := json.Unmarshal(raw, &l); err != nil || l.Position == nil {
			return exportedLine{}, false
		}
		id, err := uuid.Parse(l.ID)
		return exportedLine{Position: *l.Position, ID: id}, err == nil
	}
	last, ok := line(lastRaw)
	if !ok {
		return fail(notExport)
	}
	// A first line that is no export line makes the file one of no
	// range: it is started over (the zero line is the first event of no
	// log).
	first, _ := line(firstRaw)
	if err := fh.Truncate(end); err != nil {
		return fail(err)
	}
	if _, err := fh.Seek(end, io.SeekStart); err != nil {
		return fail(err)
	}
	return fh, &exportedLines{first: first, last: last}, nil
}

// readBackChunk is how much of a file completeLinesEnd and lastFileLine read
// at a time, from its end backwards.
const readBackChunk = 64 << 10

// completeLinesEnd is the offset just after the last newline of the first
// size bytes of fh (0: there is none).
func completeLinesEnd(fh *os.File, size int64) (int64, error) {
	buf := make([]byte, readBackChunk)
	for pos := size; pos > 0; {
		n := min(int64(len(buf)), pos)
		if _, err := fh.ReadAt(buf[:n], pos-n); err != nil {
			return 0, err
		}
		pos -= n
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return pos + int64(i) + 1, nil
		}
	}
	return 0, nil
}

// lastFileLine is the last line of the first end bytes of fh that is not
// empty (none of it when every line is), read back from end.
func lastFileLine(fh *os.File, end int64) ([]byte, error) {
	var line []byte
	trailing := true // skipping the empty lines at the end
	for pos := end; pos > 0; {
		n := min(int64(readBackChunk), pos)
		buf := make([]byte, n)
		if _, err := fh.ReadAt(buf, pos-n); err != nil {
			return nil, err
		}
		pos -= n
		if trailing {
			if buf = bytes.TrimRight(buf, "\n"); len(buf) == 0 {
				continue
			}
			trailing = false
		}
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			return append(buf[i+1:], line...), nil
		}
		line = append(buf, line...)
	}
	return line, nil
}

// resumable reports whether fh is a regular file: one an export can be
// resumed from, and synced to disk (fsync refuses a pipe or /dev/null).
func resumable(fh *os.File) bool {
	st, err := fh.Stat()
	return err == nil && st.Mode().IsRegular()
}

// export writes the events from from (inclusive; exclusive when it is
// skip, the last event of a resumed file) to to.
func (a *app) export(ctx context.Context, s eventstore.Store, w io.Writer, from eventstore.Position, skip *eventstore.Position, to eventstore.Position, bounded bool) (int, eventstore.Position, error) {
	head, err := s.Head(ctx)
	if err != nil {
		return 0, from, err
	}
	if !bounded {
		to = head
	}
	var total int64
	if s.Features().GaplessPositions {
		// From the first position to write to the last one there is:
		// neither the resumed file's last event nor a --to past the head.
		first, end := max(from.Commit, 1), min(to.Commit, head.Commit)
		if skip != nil {
			first = max(first, skip.Commit+1)
		}
		if end >= first {
			total = int64(end - first + 1)
		}
	}
	p := a.newProgress("export", "events", total)
	bw := bufio.NewWriterSize(w, 256<<10)
	n := 0
	last := from
	opts := eventstore.ReadAllOptions{From: from, Limit: eventstore.DefaultPageSize}
	for {
		page, err := s.ReadAll(ctx, opts)
		if err != nil {
			return n, last, err
		}
		before := n
		for _, e := range page.Events {
			if skip != nil && e.Position.Compare(*skip) <= 0 {
				continue
			}
			if e.Position.Compare(to) > 0 {
				page.End = true
				break
			}
			line, err := json.Marshal(e)
			if err != nil {
				return n, last, err
			}
			bw.Write(unescapeHTML(line))
			bw.WriteByte('\n')
			n++
			last = e.Position
		}
		// Only whole pages reach the file, so an interruption leaves
		// complete lines.
		if err := bw.Flush(); err != nil {
			return n, last, err
		}
		p.Add(n - before)
		if page.End || len(page.Events) == 0 {
			break
		}
		opts.From = page.Next
		if err := ctx.Err(); err != nil {
			return n, last, err
		}
	}
	p.Finish("export done")
	return n, last, nil
}

// unescapeHTML turns the escapes that encoding/json writes for <, > and &
// (\u003c, \u003e, \u0026) and for U+2028 and U+2029 (\u2028, \u2029,
// for JavaScript) back into those characters, in JSON that encoding/json
// wrote (a backslash is always the start of an escape there). An export
// line then holds the payload as the store holds it: an escape of six
// bytes per character made a valid event near the size limit a line that
// import refuses as too long. NDJSON lines end at \n alone, so U+2028 and
// U+2029 are safe in a line.
func unescapeHTML(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 == len(b) {
			out = append(out, b[i])
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) {
			if c, ok := htmlEscape(b[i+2 : i+6]); ok {
				out, i = append(out, c...), i+5
				continue
			}
		}
		// Any other escape, kept whole: its second byte is never the
		// start of one (\\u003c is a backslash, then u003c).
		out, i = append(out, b[i], b[i+1]), i+1
	}
	return out
}

// htmlEscape is the character of an escape encoding/json writes for HTML
// and JavaScript, by its hex digits, and whether hex is one.
func htmlEscape(hex []byte) (string, bool) {
	switch string(hex) {
	case "003c":
		return "<", true
	case "003e":
		return ">", true
	case "0026":
		return "&", true
	case "2028":
		return "\u2028", true
	case "2029":
		return "\u2029", true
	}
	return "", false
}
