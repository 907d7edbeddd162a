package projections

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/internal/migrate"
	"github.com/brainhq/eventstream/schemas"
)

// Projection describes one read model: its name, the events it handles,
// the migrations that create its tables and the handler that applies
// events to them.
type Projection struct {
	// Name identifies the projection in checkpoints, dead letters, locks,
	// metrics and schema names: 1 to 30 characters of [a-z0-9_], starting
	// with a letter.
	Name string

	// Handles lists the event types and schema versions the handler
	// understands. They are checked against the schema registry when the
	// runtime is built. Events of other types are not given to the handler;
	// the checkpoint still moves past them.
	Handles []EventType

	// AllTypes gives every event of the log to the handler, whatever its
	// type and schema version (the audit log). Handles must then be empty.
	AllTypes bool

	// Migrations holds the read model's NNN_name.up.sql files at its root.
	// They are applied to each generation's own schema (see Rebuild), so
	// they must not qualify table names with a schema. Every table they
	// create is exposed to readers as a view of the same name in the
	// runtime's schema. Nil: the projection has no tables of its own (a
	// reaction that only records processed events with Once).
	Migrations fs.FS

	// Handler applies events inside the transaction it is given.
	Handler Handler

	// Rewind, if set, removes from the read model the effects of every
	// event after the given position, inside tx. It makes Reprocess
	// possible: without it, a projection can only be rebuilt.
	Rewind func(ctx context.Context, tx pgx.Tx, after eventstore.Position) error

	// Raw gives the handler events as stored, without Config.Upcast (the
	// audit log keeps what was written). The schema-version check then
	// applies to the stored version.
	Raw bool

	// StopOnError stops the projection (recorded in the database, so no
	// other process takes it over) instead of parking an event that still
	// fails after the retries. Resume starts it again. A rebuild meeting
	// such an event returns its error instead, leaving the live
	// projection running.
	StopOnError bool

	// DeferIndexes lets Rebuild drop the indexes of the new generation's
	// tables that only writes keep up to date (not unique, behind no
	// constraint, not of a partitioned table) while it loads them, and make each again, by one sort
	// of the rows, once the generation has caught up and before the swap:
	// the way pg_restore loads a table. Keeping such an index up to date
	// row by row costs more than building it once (for the audit log, about
	// half of the writing backend's time in a rebuild). Only for a handler that never looks rows up in
	// its own tables (by those indexes, a lookup would scan the table
	// instead): one that only inserts, as the audit log does. Unique
	// indexes and constraints stay, so ON CONFLICT works as live. The
	// dropped indexes are recorded in the runtime's schema, so that an
	// interrupted rebuild, resumed, still makes them; live runs never drop
	// an index.
	DeferIndexes bool
}

// EventType is one event type a projection handles and the schema versions
// its handler understands (after upcasting, see Config.Upcast).
type EventType struct {
	Type     string
	Versions []int
}

// Types declares several event types at one schema version.
func Types(version int, types ...string) []EventType {
	out := make([]EventType, len(types))
	for i, t := range types {
		out[i] = EventType{Type: t, Versions: []int{version}}
	}
	return out
}

// Handler applies a batch of events, in log order, inside tx. The runtime
// commits tx together with the projection's checkpoint, so the handler
// must not commit or roll it back, and must write only through tx. A
// batch may hold a single event (when the runtime isolates a failing one);
// a handler must give the same result for a batch as for its events one
// by one. A panic in Handle is recovered and is an error of the batch
// like a returned one (a *PanicError): the transaction rolls back and the
// event is retried, then parked or the projection stopped.
type Handler interface {
	Handle(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error
}

// loggerKey carries the runtime's logger in a handler's context.
type loggerKey struct{}

// Logger returns, inside a Handler (and a Projection's Rewind, and
// Config.OnPublish), the logger of the runtime calling it (Config.Logger),
// so that its warnings go where the runtime's own logs go (a command's
// --log-level and format); outside a runtime's call, slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return slog.Default()
}

// withLogger is ctx carrying the runtime's logger for its handlers.
func (r *Runtime) withLogger(ctx context.Context) context.Context {
	return context.WithValue(ctx, loggerKey{}, r.log)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
	return f(ctx, tx, events)
}

// EachEvent returns a Handler that applies events one at a time.
func EachEvent(fn func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error) Handler {
	return HandlerFunc(func(ctx context.Context, tx pgx.Tx, events []eventstore.Event) error {
		for _, e := range events {
			if err := fn(ctx, tx, e); err != nil {
				return fmt.Errorf("event %s (%s at %s): %w", e.ID, e.Type, e.Position, err)
			}
		}
		return nil
	})
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,29}$`)

// registered is a checked projection with what the runtime derives from it.
type registered struct {
	Projection
	migrations []migrate.Migration
	versions   map[string][]int // handled type -> versions; nil when AllTypes
	component  string
}

func (p *registered) handles(typ string) bool {
	if p.AllTypes {
		return true
	}
	_, ok := p.versions[typ]
	return ok
}

// understands reports whether the handler takes typ at schema version v.
func (p *registered) understands(typ string, v int) bool {
	if p.AllTypes {
		return true
	}
	return slices.Contains(p.versions[typ], v)
}

// check validates a projection's declaration against the registry.
func check(p Projection, reg *schemas.Registry) (*registered, error) {
	if !namePattern.MatchString(p.Name) {
		return nil, &DeclarationError{Projection: p.Name, Reason: "name must be 1 to 30 characters of [a-z0-9_], starting with a letter"}
	}
	if p.Handler == nil {
		return nil, &DeclarationError{Projection: p.Name, Reason: "it has no Handler"}
	}
	r := &registered{Projection: p, component: "projection:" + p.Name}
	if p.AllTypes {
		if len(p.Handles) > 0 {
			return nil, &DeclarationError{Projection: p.Name, Reason: "AllTypes and Handles are exclusive"}
		}
	} else {
		if len(p.Handles) == 0 {
			return nil, &DeclarationError{Projection: p.Name, Reason: "it handles no event type (set Handles, or AllTypes)"}
		}
		r.versions = map[string][]int{}
		for _, et := range p.Handles {
			if _, dup := r.versions[et.Type]; dup {
				return nil, &DeclarationError{Projection: p.Name, Type: et.Type, Reason: "the type is declared twice"}
			}
			if len(et.Versions) == 0 {
				return nil, &DeclarationError{Projection: p.Name, Type: et.Type, Reason: "no schema version is declared"}
			}
			known := reg.Versions(et.Type)
			if len(known) == 0 {
				return nil, &DeclarationError{Projection: p.Name, Type: et.Type, Err: schemas.ErrUnknownType,
					Reason: "the schema registry has no such event type"}
			}
			for _, v := range et.Versions {
				if !reg.Has(et.Type, v) {
					return nil, &DeclarationError{Projection: p.Name, Type: et.Type, Version: v, Known: known, Err: schemas.ErrUnknownVersion,
						Reason: "the schema registry has no such schema version"}
				}
			}
			r.versions[et.Type] = slices.Clone(et.Versions)
		}
	}
	if p.Migrations != nil {
		ms, err := migrate.Load(p.Migrations)
		if err != nil {
			return nil, &DeclarationError{Projection: p.Name, Reason: "its migrations do not load", Err: err}
		}
		r.migrations = ms
	}
	return r, nil
}

// DeclarationError says why a projection was refused when the runtime was
// built. It matches schemas.ErrUnknownType or schemas.ErrUnknownVersion
// with errors.Is when the projection names a type or version the schema
// registry lacks.
type DeclarationError struct {
	Projection string
	Type       string
	Version    int
	Known      []int
	Reason     string
	Err        error
}

func (e *DeclarationError) Error() string {
	msg := fmt.Sprintf("projections: projection %q", e.Projection)
	if e.Type != "" {
		msg += fmt.Sprintf(" handles %q", e.Type)
		if e.Version > 0 {
			msg += fmt.Sprintf(" v%d", e.Version)
		}
		msg += ", but"
	} else {
		msg += " is refused:"
	}
	msg += " " + e.Reason
	if len(e.Known) > 0 {
		msg += fmt.Sprintf(" (known versions: %v)", e.Known)
	}
	if e.Err != nil && !errors.Is(e.Err, schemas.ErrUnknownType) && !errors.Is(e.Err, schemas.ErrUnknownVersion) {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *DeclarationError) Unwrap() error { return e.Err }
