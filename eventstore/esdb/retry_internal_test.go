package esdb

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/brainhq/eventstream/eventstore/esdb/esdbtest"
	"github.com/brainhq/eventstream/eventstore/storetest"
)

// renewedStore is a store on a stand-in whose client has been renewed (as
// after a failed discovery): old is the client it had, now retired.
func renewedStore(t *testing.T) (s *Store, old *conn) {
	t.Helper()
	s = standIn(t)
	old = s.conn()
	s.renew()
	if s.conn() == old {
		t.Fatal("the renewal did not replace the client")
	}
	return s, old
}

// standIn is a store on a stand-in of its own.
func standIn(t *testing.T) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg, err := storetest.Registry()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := esdbtest.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	s, err := New(ctx, srv.URL(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A call that picked up the client just before a renewal replaced and
// closed it, and finds it closed (or dead) before entering it, runs on the
// new client: it used to fail with errClientGone (ErrUnavailable) although
// a working client existed.
func TestCallOnARetiredClientRunsOnItsSuccessor(t *testing.T) {
	t.Parallel()
	for _, dead := range []bool{false, true} {
		s, old := renewedStore(t)
		if dead {
			old.markDead()
		} else if old.mu.Lock(); !old.closed {
			old.mu.Unlock()
			t.Fatal("the retired client, with no call inside, is not closed")
		} else {
			old.mu.Unlock()
		}
		var runs atomic.Int32
		v, err := call(t.Context(), s, old, func(c *client.Client) (*client.ServerVersion, error) {
			runs.Add(1)
			return c.GetServerVersion()
		}, nil)
		if err != nil || v == nil || runs.Load() != 1 {
			t.Fatalf("dead %v: a call on the retired client: %v, %v, ran %d times; want the new client's answer, run once", dead, v, err, runs.Load())
		}
	}
}

// A call that entered its client is not run again when the client is
// found dead under it: it may have reached the server.
func TestCallInsideADeadClientIsNotRetried(t *testing.T) {
	t.Parallel()
	s := standIn(t)
	cn := s.conn()
	entered, release := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	errc := make(chan error, 1)
	go func() {
		_, err := call(t.Context(), s, cn, func(c *client.Client) (int, error) {
			if runs.Add(1) == 1 {
				close(entered)
				<-release
			}
			return 0, nil
		}, nil)
		errc <- err
	}()
	<-entered
	// A renewal: a retry would find a working client.
	s.renew()
	if s.conn() == cn {
		t.Fatal("the renewal did not replace the client")
	}
	cn.markDead()
	err := <-errc
	close(release)
	if !errors.Is(err, errClientGone) || runs.Load() != 1 {
		t.Fatalf("a call in a client found dead: %v, ran %d times; want errClientGone, run once", err, runs.Load())
	}
}
