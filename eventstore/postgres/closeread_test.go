package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
)

// TestStoreCloseEndsAReadStuckOnTheNetwork: ReadStream, ReadAll and Head
// whose query does not come back (the network to the database hangs)
// return ErrClosed when the store is closed, as a subscription's Next
// does, instead of holding their callers until their own deadlines; and
// Close returns.
func TestStoreCloseEndsAReadStuckOnTheNetwork(t *testing.T) {
	t.Parallel()
	reads := map[string]func(context.Context, eventstore.Store) error{
		"ReadStream": func(ctx context.Context, s eventstore.Store) error {
			_, err := s.ReadStream(ctx, "stuck", 1, 0)
			return err
		},
		"ReadStream from a later version": func(ctx context.Context, s eventstore.Store) error {
			_, err := s.ReadStream(ctx, "stuck", 3, 10)
			return err
		},
		"ReadAll": func(ctx context.Context, s eventstore.Store) error {
			_, err := s.ReadAll(ctx, eventstore.ReadAllOptions{})
			return err
		},
		"ReadAll filtered": func(ctx context.Context, s eventstore.Store) error {
			_, err := s.ReadAll(ctx, eventstore.ReadAllOptions{TenantID: "acme"})
			return err
		},
		"Head": func(ctx context.Context, s eventstore.Store) error {
			_, err := s.Head(ctx)
			return err
		},
	}
	for name, read := range reads {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newStallEnv(t)
			// The read works before the stall.
			if err := read(context.Background(), e.a); err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Fatalf("before the stall: %v", err)
			}
			e.proxy.SetStall(true)
			errc := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				errc <- read(ctx, e.a)
			}()
			time.Sleep(300 * time.Millisecond) // the read is sent and waits for its answer
			select {
			case err := <-errc:
				t.Fatalf("the read returned on a stalled network before the Close: %v", err)
			default:
			}
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				e.a.Close()
			}()
			wantClosedSoon(t, name+" stuck on the network when its store is closed", errc)
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Store.Close did not return")
			}
		})
	}
}
