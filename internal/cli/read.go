package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore"
)

func (a *app) readCommand() *cobra.Command {
	var (
		all          bool
		from         string
		limit        int
		types        []string
		tenant       string
		showPayloads bool
	)
	cmd := &cobra.Command{
		Use:   "read (STREAM [--from VERSION] | --all [--from POSITION]) [--limit N]",
		Short: "Print the events of a stream, or of the whole log",
		Long: `Print the events of one stream from a version (default 1), or of the whole
log from a global position (--all; default: the start), in order. --json
prints each event's full envelope as one JSON object per line.`,
		Args: argsMax(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case all && len(args) > 0:
				return usagef("give a STREAM or --all, not both")
			case !all && len(args) == 0:
				return usagef("give a STREAM, or --all for the whole log")
			case limit < 0:
				return usagef("--limit %d: want 0 (no limit) or more", limit)
			}
			if !all && (len(types) > 0 || tenant != "") {
				return usagef("--type and --tenant filter --all")
			}
			b, err := a.openStore(cmd.Context(), storeOptions{connectOptions: connectOptions{appName: "eventstream-read"}, logOnly: true})
			if err != nil {
				return err
			}
			defer b.Close()
			p := a.newEventPrinter(all, showPayloads)
			if all {
				pos := eventstore.Start
				if from != "" {
					if pos, err = eventstore.ParsePosition(from); err != nil {
						return usagef("--from: %v", err)
					}
				}
				err = readAll(cmd.Context(), b.Store, eventstore.ReadAllOptions{From: pos, Types: types, TenantID: tenant}, limit, p.print)
			} else {
				v := int64(1)
				if from != "" {
					// ParseInt, not Sscan: Sscan reads the number a value
					// starts with (1.5 as 1, 2abc as 2) and hex (0x2).
					if v, err = strconv.ParseInt(strings.TrimSpace(from), 10, 64); err != nil || v < 1 {
						return usagef("--from %q: want a stream version >= 1", from)
					}
				}
				var events []eventstore.Event
				events, err = b.Store.ReadStream(cmd.Context(), args[0], v, limit)
				if errors.Is(err, eventstore.ErrStreamNotFound) {
					return fmt.Errorf("stream %q not found (it has no events)", args[0])
				}
				for _, e := range events {
					if err == nil {
						err = p.print(e)
					}
				}
			}
			if err != nil && p.printed == 0 {
				return err // no table with only its header above the error
			}
			if ferr := p.flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&all, "all", false, "read the whole log instead of one stream")
	f.StringVar(&from, "from", "", "first stream version (STREAM) or global position (--all) to print")
	f.IntVar(&limit, "limit", 0, "print at most N events (0: no limit)")
	f.StringSliceVar(&types, "type", nil, "with --all: only these event types (repeat or comma-separate)")
	f.StringVar(&tenant, "tenant", "", "with --all: only this tenant's events")
	f.BoolVar(&showPayloads, "payload", false, "show payloads in the table")
	return cmd
}

// readAll pages through the log from opts.From and calls fn per event,
// stopping after limit events (0: at the head).
func readAll(ctx context.Context, s eventstore.Store, opts eventstore.ReadAllOptions, limit int, fn func(eventstore.Event) error) error {
	n := 0
	for {
		if limit > 0 {
			opts.Limit = min(eventstore.DefaultPageSize, limit-n)
		}
		page, err := s.ReadAll(ctx, opts)
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			if err := fn(e); err != nil {
				return err
			}
			n++
		}
		if page.End || len(page.Events) == 0 || (limit > 0 && n >= limit) {
			return nil
		}
		opts.From = page.Next
	}
}

// eventPrinter prints events as NDJSON (--json) or a table.
type eventPrinter struct {
	a        *app
	t        *table
	stream   bool
	payloads bool
	printed  int // events printed
}

func (a *app) newEventPrinter(withStream, payloads bool) *eventPrinter {
	p := &eventPrinter{a: a, stream: withStream, payloads: payloads}
	if !a.asJSON {
		cols := []any{"POSITION"}
		if withStream {
			cols = append(cols, "STREAM")
		}
		cols = append(cols, "VERSION", "TYPE", "SCHEMA", "TENANT", "TIMESTAMP", "ID")
		if payloads {
			cols = append(cols, "PAYLOAD")
		}
		p.t = a.newTable(cols...)
	}
	return p
}

func (p *eventPrinter) print(e eventstore.Event) error {
	p.printed++
	if p.a.asJSON {
		return p.a.printJSON(e)
	}
	cols := []any{e.Position}
	if p.stream {
		cols = append(cols, e.Stream)
	}
	cols = append(cols, e.Version, e.Type, fmt.Sprintf("v%d", e.Meta.SchemaVersion), e.Meta.TenantID, e.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z"), e.ID)
	if p.payloads {
		cols = append(cols, clip(string(e.Payload), 120))
	}
	p.t.row(cols...)
	return nil
}

func (p *eventPrinter) flush() error {
	if p.t != nil {
		return p.t.flush()
	}
	return nil
}

func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
