package cli

import (
	"context"
	"errors"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/eventstore"
)

func (a *app) tailCommand() *cobra.Command {
	var (
		from     string
		patterns []string
	)
	cmd := &cobra.Command{
		Use:   "tail [--from POSITION] [--type PATTERN]",
		Short: "Follow the whole log live, one JSON object per line, until interrupted",
		Long: `Follow the whole log: print every new event as one JSON object per line
until interrupted (Ctrl-C ends it with exit code 0), or until the reader
of its output goes away (tail | head -1 ends when head does, silently,
also while no event comes). A lost connection
(the database restarting) is retried, with a warning on stderr, and tail
carries on where it was. --from prints from a global position on (that
position's event included, the history first) instead of only new events;
a position past the head prints the events from there as they come.
--type keeps only matching types; a pattern may use * and ? (course.*,
ir.approval_*); repeat it or separate patterns with commas.`,
		Args: argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			// tail also ends, at once, when the reader of its output goes
			// away (tail | head -1), without waiting for an event to
			// write: on a quiet log that could be never.
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			var readerGone atomic.Bool
			go watchReader(ctx, a.io.Out, func() { readerGone.Store(true); cancel() })
			defer func() {
				// Ctrl-C is how tail ends, whatever it was doing then:
				// following, or still connecting (where the error says
				// the connection failed) or reading the history.
				if err != nil && (cmd.Context().Err() != nil || readerGone.Load()) {
					err = nil
				}
			}()
			for _, p := range patterns {
				if _, err := path.Match(p, ""); err != nil {
					return usagef("--type %q: bad pattern", p)
				}
			}
			var after, floor eventstore.Position
			if from != "" {
				if after, err = eventstore.ParsePosition(from); err != nil {
					return usagef("--from: %v", err)
				}
			}
			b, err := a.openStore(ctx, storeOptions{connectOptions: connectOptions{appName: "eventstream-tail"}, logOnly: true})
			if err != nil {
				return err
			}
			defer b.Close()
			if from == "" {
				if after, err = b.Store.Head(ctx); err != nil {
					return err
				}
			} else if !after.IsZero() {
				// --from is the first position to print; After is exclusive.
				if after, floor, err = a.printFirst(ctx, b.Store, after, patterns); err != nil {
					return err
				}
			}
			return a.follow(ctx, b.Store, after, floor, patterns)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "first global position to print (default: only new events)")
	cmd.Flags().StringSliceVar(&patterns, "type", nil, "only event types matching PATTERN (* and ? allowed)")
	return cmd
}

// printFirst prints the event at position from, if any, and returns the
// position to subscribe after and the first position to print from the
// subscription (Start: all of it). (Positions are not consecutive on every
// backend, so "the position before from" cannot be computed.)
//
// With no event at or after from yet (--from past the head), it subscribes
// after the head, read before it looked, and prints from from on: before,
// it subscribed after from, so the event at from itself, when it came, was
// never printed.
func (a *app) printFirst(ctx context.Context, s eventstore.Store, from eventstore.Position, patterns []string) (after, floor eventstore.Position, err error) {
	head, err := s.Head(ctx)
	if err != nil {
		return from, floor, err
	}
	page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{From: from, Limit: 1})
	if err != nil {
		return from, floor, err
	}
	if len(page.Events) == 0 {
		return head, from, nil
	}
	e := page.Events[0]
	if e.Position != from {
		// No event at from: subscribe from just before the next one.
		if s.Features().GaplessPositions && e.Position.Commit > 0 {
			return eventstore.Pos(e.Position.Commit - 1), floor, nil
		}
		return from, floor, nil
	}
	if matchAny(patterns, e.Type) {
		if err := a.printJSON(e); err != nil {
			return from, floor, err
		}
	}
	return e.Position, floor, nil
}

// follow prints the events after position after, from floor on, that
// match patterns, until ctx ends.
func (a *app) follow(ctx context.Context, s eventstore.Store, after, floor eventstore.Position, patterns []string) error {
	opts := eventstore.SubscribeOptions{After: after, BatchSize: 500}
	exact := true
	for _, p := range patterns {
		if strings.ContainsAny(p, "*?[") {
			exact = false
		}
	}
	if exact {
		opts.Types = patterns
	}
	sub, err := s.Subscribe(ctx, opts)
	if err != nil {
		return err
	}
	defer sub.Close()
	const maxWait = 5 * time.Second
	wait := 250 * time.Millisecond
	for {
		events, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, eventstore.ErrClosed) {
				return err
			}
			// Any other error is transient (the database restarted, a
			// connection was cut): the subscription keeps its place, and
			// tail follows until interrupted, so it waits and reads again.
			a.log.Warn("tail: reading the log failed; retrying", "in", wait, "err", err)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
			wait = min(2*wait, maxWait)
			continue
		}
		wait = 250 * time.Millisecond
		for _, e := range events {
			if e.Position.Compare(floor) < 0 || !matchAny(patterns, e.Type) {
				continue
			}
			if err := a.printJSON(e); err != nil {
				return err
			}
		}
	}
}

func matchAny(patterns []string, typ string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, typ); ok {
			return true
		}
	}
	return false
}
