package storetest

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

// bigEvents is how many near-maximum events testPageBytes writes: about
// twice MaxPageBytes, so that a page of the default size must be cut.
const bigEvents = 2*eventstore.MaxPageBytes/bigNote + 4

// bigNote is the length of each big event's note: random hex, which no
// backend compresses, or, every other event, one letter repeated, which
// PostgreSQL does compress.
const bigNote = 960 << 10

// pageSlack is how far a backend's count of an event (PostgreSQL counts
// stored jsonb) may differ from eventstore.PageBytes.
const pageSlack = 4 << 10

// checkPageBytes fails unless evs is a page that stops at MaxPageBytes:
// the events before its last hold less than MaxPageBytes.
func checkPageBytes(t *testing.T, what string, evs []eventstore.Event) {
	t.Helper()
	if len(evs) == 0 {
		t.Fatalf("%s: empty page", what)
	}
	before := 0
	for i := range evs[:len(evs)-1] {
		before += eventstore.PageBytes(&evs[i])
	}
	if before >= eventstore.MaxPageBytes+len(evs)*pageSlack {
		t.Fatalf("%s: %d events hold %d bytes before the last; a page stops at the event that reaches MaxPageBytes (%d)",
			what, len(evs), before, eventstore.MaxPageBytes)
	}
}

func (s *suite) testPageBytes(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	note := make([]byte, bigNote/2)
	var want []eventstore.Event
	for i := range bigEvents {
		for j := range note {
			note[j] = byte(rnd.Uint32())
		}
		text := hex.EncodeToString(note)
		if i%2 == 1 {
			// As compressible as text gets: a backend that counted
			// compressed sizes would let a page hold many times
			// MaxPageBytes of these.
			text = strings.Repeat("x", bigNote)
		}
		e := added(fmt.Sprintf("big-%d", i))
		e.Payload = mustJSON(map[string]any{"name": e.Type, "note": text})
		// A small event between the big ones: the cut falls on whichever.
		res := mustAppend(t, st, fmt.Sprintf("big-%d", i%3), eventstore.Any, e, renamed(fmt.Sprintf("small-%d", i)))
		want = append(want, res.Events...)
	}
	var wantAdded []eventstore.Event
	for _, e := range want {
		if e.Type == TypeAdded {
			wantAdded = append(wantAdded, e)
		}
	}

	for _, c := range []struct {
		name string
		opts eventstore.ReadAllOptions
		want []eventstore.Event
	}{
		{"ReadAll", eventstore.ReadAllOptions{}, want},
		{"ReadAllLimit", eventstore.ReadAllOptions{Limit: 1000}, want},
		{"ReadAllTypes", eventstore.ReadAllOptions{Types: []string{TypeAdded}}, wantAdded},
		{"ReadAllTenant", eventstore.ReadAllOptions{TenantID: tenant}, want},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := c.opts
			var got []eventstore.Event
			pages := 0
			for {
				p, err := st.ReadAll(ctx, opts)
				if err != nil {
					t.Fatalf("ReadAll(From %v): %v", opts.From, err)
				}
				pages++
				if pages > len(c.want)+1 {
					t.Fatalf("%d pages for %d events", pages, len(c.want))
				}
				if !p.End {
					checkPageBytes(t, fmt.Sprintf("page %d", pages), p.Events)
				}
				got = append(got, p.Events...)
				if p.End {
					break
				}
				if p.Next.Compare(opts.From) <= 0 {
					t.Fatalf("page %d: Next %v does not advance past From %v", pages, p.Next, opts.From)
				}
				opts.From = p.Next
			}
			sameEvents(t, c.name, got, c.want)
			// ~2 x MaxPageBytes of events: at least two pages cut short,
			// each of far fewer events than the limit.
			if pages < 3 {
				t.Fatalf("%d events, %d of them over %d bytes, came in %d pages; want at least 3 (cut at MaxPageBytes %d)",
					len(c.want), bigEvents, bigNote, pages, eventstore.MaxPageBytes)
			}
		})
	}

	t.Run("Subscribe", func(t *testing.T) {
		sub := subscribe(t, st, eventstore.SubscribeOptions{BatchSize: 1000})
		var got []eventstore.Event
		batches := 0
		for len(got) < len(want) {
			evs, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("Next after %d events: %v", len(got), err)
			}
			batches++
			if len(got)+len(evs) < len(want) {
				checkPageBytes(t, fmt.Sprintf("batch %d", batches), evs)
			}
			got = append(got, evs...)
		}
		sameEvents(t, "subscription", got, want)
		if batches < 3 {
			t.Fatalf("%d events came in %d batches; want at least 3 (cut at MaxPageBytes)", len(want), batches)
		}
	})
}
