package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
)

// DefaultImportBatchBytes bounds one append of Import and Copy: half of
// EventStoreDB's default maximum append size (1 MiB), which also counts
// each event's metadata and framing.
const DefaultImportBatchBytes = 512 << 10

// CopyOptions adjust Copy.
type CopyOptions struct {
	// After resumes a copy: only source events whose position is greater
	// are copied. Start copies the whole log. CopyProgress.Position is
	// the value to resume from.
	After Position
	// PageSize is how many events one source read returns; <= 0 means
	// DefaultPageSize.
	PageSize int
	// MaxBatchBytes bounds one target append (payload, meta and envelope
	// strings added up); <= 0 means DefaultImportBatchBytes. A bound
	// above MaxAppendBytes is taken as MaxAppendBytes, which no append
	// may pass.
	MaxBatchBytes int
	// Progress, if set, is called after each page is copied, and when an
	// append fails, with what the target holds of that page: its last call
	// is the progress Copy returns.
	Progress func(CopyProgress)
}

// CopyProgress says how far a copy is.
type CopyProgress struct {
	// Events is how many events the target holds from this copy: written
	// now, or found already written by an earlier, interrupted run. After
	// a failure too: they are the source's events up to Position. An
	// append whose outcome is unknown (cut off by ctx in flight) counts as
	// not written; copying again settles it.
	Events int64
	// Appends is how many appends were sent to the target.
	Appends int64
	// Position is the source position of the last event copied; every
	// event of the source up to it (after CopyOptions.After) is in the
	// target, also after a failure.
	Position Position
}

// Copy copies the log of from into to, in from's order: every event keeps
// its id, type, stream, stream version, source, target, payload and meta.
// The target stamps its own positions and timestamps.
//
// Copy is idempotent: each event is appended at its own stream version with
// its own id, so running a copy again (whole, or resumed from any earlier
// CopyProgress.Position) writes nothing twice; events the target already
// has are acknowledged as retries. A target stream that holds other events
// at those versions makes Copy fail, naming the stream: the two logs have
// diverged.
//
// Consecutive events of one stream go in one append, up to MaxBatchBytes
// and MaxBatchEvents; the source's own append boundaries are not kept.
func Copy(ctx context.Context, from, to Store, opts CopyOptions) (CopyProgress, error) {
	limit := opts.PageSize
	if limit <= 0 {
		limit = DefaultPageSize
	}
	progress := CopyProgress{Position: opts.After}
	read := ReadAllOptions{From: opts.After, Limit: limit}
	for {
		page, err := from.ReadAll(ctx, read)
		if err != nil {
			return progress, fmt.Errorf("eventstore: copy: read the source from %v: %w", read.From, err)
		}
		events := page.Events
		// ReadAll's From is inclusive; After is not.
		for len(events) > 0 && !opts.After.IsZero() && events[0].Position.Compare(opts.After) <= 0 {
			events = events[1:]
		}
		if len(events) > 0 {
			// A failure part way through the page leaves the events
			// before the failing one in the target: earlier runs, and
			// those of the failing run the fallback stored one by one.
			appends, held, err := importEvents(ctx, to, events, opts.MaxBatchBytes)
			progress.Appends += int64(appends)
			if held > 0 {
				progress.Events += int64(held)
				progress.Position = events[held-1].Position
			}
			if opts.Progress != nil {
				opts.Progress(progress)
			}
			if err != nil {
				return progress, fmt.Errorf("eventstore: copy: %w", err)
			}
		}
		if page.End {
			return progress, nil
		}
		if page.Next.Compare(read.From) <= 0 {
			return progress, fmt.Errorf("eventstore: copy: the source's next page %v does not advance past %v", page.Next, read.From)
		}
		read.From = page.Next
	}
}

// Import appends events read elsewhere (from another store, an export
// file) to to, in the order given, each at its own stream version
// (Exact(Version-1)) with its own id, in appends of at most maxBatchBytes
// (<= 0: DefaultImportBatchBytes; at most MaxAppendBytes). It returns
// how many appends it sent.
// Like Copy, it is idempotent: events to already holds are acknowledged as
// retries, and a stream whose stored events differ is an error.
//
// Every event needs its id and its stream version: an event without
// either is refused, as a *ValidationError naming its index, before
// anything is written. (The store would give an event without an id a
// new one, so a run could never recognise it as already imported, and
// every later run would find the stream diverged.)
func Import(ctx context.Context, to Store, events []Event, maxBatchBytes int) (appends int, err error) {
	for i, e := range events {
		switch {
		case e.ID == uuid.Nil:
			return 0, &ValidationError{Index: i, Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, Pointer: "/id", Rule: "required",
				Message: "an imported event needs its id: Import keeps ids and is idempotent by them"}
		case e.Version < 1:
			return 0, &ValidationError{Index: i, Type: e.Type, SchemaVersion: e.Meta.SchemaVersion, Pointer: "/version", Rule: "minimum",
				Message: fmt.Sprintf("stream version %d: an imported event needs its stream version (from 1)", e.Version)}
		}
	}
	appends, _, err = importEvents(ctx, to, events, maxBatchBytes)
	return appends, err
}

// importEvents is Import, and also returns how many events at the head of
// events the target holds: all of them, or on failure those before the
// event it failed on.
func importEvents(ctx context.Context, to Store, events []Event, maxBatchBytes int) (appends, held int, err error) {
	if maxBatchBytes <= 0 {
		maxBatchBytes = DefaultImportBatchBytes
	}
	// A run the validator would refuse as a whole (batch-bytes) is cut
	// here instead: AppendBytes counts at least what the validator does.
	maxBatchBytes = min(maxBatchBytes, MaxAppendBytes)
	for held < len(events) {
		run := runLength(events[held:], maxBatchBytes)
		n, stored, err := appendOrOneByOne(ctx, to, events[held:held+run])
		appends += n
		held += stored
		if err != nil {
			return appends, held, err
		}
	}
	return appends, held, nil
}

// runLength is the length of the run of events at the head of events that
// one append may carry: one stream, consecutive versions, within the
// limits. It is at least 1.
func runLength(events []Event, maxBytes int) int {
	size := AppendBytes(events[0])
	n := 1
	for n < len(events) && n < MaxBatchEvents {
		e := events[n]
		if e.Stream != events[0].Stream || e.Version != events[n-1].Version+1 {
			break
		}
		s := AppendBytes(e)
		if size+s > maxBytes {
			break
		}
		size += s
		n++
	}
	return n
}

// AppendBytes estimates what an event weighs in an append: its payload,
// its meta and envelope strings, and a fixed allowance for the rest. It is
// at least what the validator counts against MaxAppendBytes, so events
// whose AppendBytes add up to at most that limit are never refused as
// too heavy together. Import and Copy cut their appends by it.
func AppendBytes(e Event) int {
	return len(e.Payload) + metaSize(e.Meta) + len(e.Type) + len(e.Stream) + len(e.Source) + len(e.Target) + 256
}

// metaSize is the length of m as the validator encodes it (encodeMeta),
// counted from the named fields' lengths; only free-form keys, if any, are
// marshalled. Meta that cannot be encoded counts its named fields alone
// (the append will refuse it anyway).
func metaSize(m Meta) int {
	var digits [20]byte
	n := len(`{"schema_version":`) + len(strconv.AppendInt(digits[:0], int64(m.SchemaVersion), 10)) +
		len(`,"tenant_id":`) + jsonStringLen(m.TenantID) + len(`}`)
	for _, kv := range [...]struct{ k, v string }{{"producer", m.Producer}, {"correlation_id", m.CorrelationID}, {"causation_id", m.CausationID}} {
		if kv.v != "" {
			n += len(`,"":`) + len(kv.k) + jsonStringLen(kv.v)
		}
	}
	if len(m.Extra) > 0 {
		extra := make(map[string]any, len(m.Extra))
		for k, v := range m.Extra {
			if !metaKeys[k] {
				extra[k] = v
			}
		}
		if raw, err := json.Marshal(extra); err == nil && len(raw) > 2 {
			n += len(`,`) + len(raw) - 2
		}
	}
	return n
}

// appendOrOneByOne appends one run. If the target refuses it as a whole
// (a duplicate id, or its stream not at the run's version), it reads the
// target's stream at the run's versions: an earlier, interrupted copy may
// have stored the head of the run. That head is appended again one event
// at a time, each an idempotent retry that writes nothing (or the first
// whose content differs, refused), and the rest of the run as one append.
// A target that holds none of the run refuses it as it is, and nothing of
// it is written: a run is written whole or not at all, beyond what the
// target already held. held is how many events at the head of run the
// target holds when it returns.
func appendOrOneByOne(ctx context.Context, to Store, run []Event) (appends, held int, err error) {
	err = appendRun(ctx, to, run)
	appends = 1
	if err == nil {
		return appends, len(run), nil
	}
	if len(run) == 1 || !(errors.Is(err, ErrDuplicateEvent) || errors.Is(err, ErrConcurrency)) {
		return appends, 0, err
	}
	stored, rerr := storedHead(ctx, to, run)
	if rerr != nil {
		return appends, 0, rerr
	}
	if stored == 0 {
		return appends, 0, err
	}
	for i := range stored {
		appends++
		if err := appendRun(ctx, to, run[i:i+1]); err != nil {
			return appends, i, err
		}
	}
	if stored < len(run) {
		appends++
		if err := appendRun(ctx, to, run[stored:]); err != nil {
			return appends, stored, err
		}
	}
	return appends, len(run), nil
}

// storedHead is how many events at the head of run the target's stream
// holds at their versions, with their ids.
func storedHead(ctx context.Context, to Store, run []Event) (int, error) {
	first := run[0]
	got, err := to.ReadStream(ctx, first.Stream, first.Version, len(run))
	if errors.Is(err, ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read stream %q from version %d: %w", first.Stream, first.Version, err)
	}
	n := 0
	for n < len(got) && n < len(run) && got[n].ID == run[n].ID && got[n].Version == run[n].Version {
		n++
	}
	return n, nil
}

func appendRun(ctx context.Context, to Store, run []Event) error {
	first := run[0]
	if first.Version < 1 {
		return fmt.Errorf("event %s of stream %q has version %d: an imported event needs its stream version", first.ID, first.Stream, first.Version)
	}
	res, err := to.Append(ctx, first.Stream, Exact(first.Version-1), run...)
	if err != nil {
		var ce *ConcurrencyError
		if errors.As(err, &ce) {
			return fmt.Errorf("stream %q: the target holds other events than the source at version %d (it is at version %d): %w", first.Stream, first.Version, ce.Actual, err)
		}
		return fmt.Errorf("append %d events to stream %q at version %d: %w", len(run), first.Stream, first.Version, err)
	}
	for i, e := range res.Events {
		if e.ID != run[i].ID || e.Version != run[i].Version {
			return fmt.Errorf("stream %q: the target stored event %s at version %d where the source has %s at version %d", first.Stream, e.ID, e.Version, run[i].ID, run[i].Version)
		}
	}
	return nil
}
