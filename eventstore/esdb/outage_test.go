package esdb_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/esdb"
	"github.com/brainhq/eventstream/eventstore/esdb/esdbtest"
)

// inClient counts the goroutines inside the EventStoreDB client's
// connection plumbing: asking its connection goroutine for the connection,
// or telling it to reconnect. A call stranded by a failed discovery stays
// there.
func inClient() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "EventStore-Client-Go/v4/esdb.(*grpcClient).") {
			n++
		}
	}
	return n
}

// TestStandIn_CallsEndWhenEveryNodeGoesAway: many calls of every kind in
// flight while the only node goes away. The client (v4.2.0) never answers
// a call that asks it for its connection, or tells it to reconnect, while
// it runs a discovery that then fails, whatever the call's context says:
// such calls hung for ever, and Close waited for them. Each call must end
// within a bound once its context has ended (or, without a deadline, with
// eventstore.ErrUnavailable), Close must return within a bound, and the
// goroutines left inside the client must not grow with the outage's
// length: at most one per call in flight when the node went away.
func TestStandIn_CallsEndWhenEveryNodeGoesAway(t *testing.T) {
	// Not parallel: it counts the goroutines inside the client.
	base := inClient()
	reg := registry(t)
	srv, err := esdbtest.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	nctx, ncancel := context.WithTimeout(t.Context(), time.Minute)
	defer ncancel()
	// Discovery gives up after 5 attempts 300 ms apart, about 1.5 s:
	// longer than the callers' deadlines, so callers that gave up call
	// again while the first failed discovery runs. Those calls must wait
	// for the abandoned ones, not enter the client and be stranded too
	// (one more goroutine per call made meanwhile). A renewal's discovery
	// fails in the outage below too.
	st, err := esdb.New(nctx, srv.URL()+"&maxDiscoverAttempts=5&discoveryInterval=300", reg)
	if err != nil {
		t.Fatal(err)
	}

	const callers = 36
	kinds := []string{"Append", "AppendReporting", "ReadStream", "ReadAll", "Head", "Subscribe"}
	for i := range callers {
		mustAppend(t, st, fmt.Sprint("s-", i), eventstore.NoStream, added(fmt.Sprint("s-", i)))
	}
	// call runs one call of caller i's kind under ctx.
	call := func(ctx context.Context, i int) error {
		stream := fmt.Sprint("s-", i)
		switch kinds[i%len(kinds)] {
		case "Append":
			_, err := st.Append(ctx, stream, eventstore.Any, added(stream))
			return err
		case "AppendReporting":
			_, _, err := st.AppendReporting(ctx, stream, eventstore.StreamExists, added(stream))
			return err
		case "ReadStream":
			_, err := st.ReadStream(ctx, stream, 1, 0)
			return err
		case "ReadAll":
			_, err := st.ReadAll(ctx, eventstore.ReadAllOptions{Limit: 10})
			return err
		case "Head":
			_, err := st.Head(ctx)
			return err
		default:
			sub, err := st.Subscribe(ctx, eventstore.SubscribeOptions{})
			if err != nil {
				return err
			}
			defer sub.Close()
			_, err = sub.Next(ctx)
			return err
		}
	}

	stop := make(chan struct{})
	var mu sync.Mutex
	var problems []string
	report := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	// ready: every caller has had a call answered, so that calls of
	// every kind are in flight when the node goes away. down: the node
	// is gone; a call begun after it that failed is recorded in outage.
	var ready sync.WaitGroup
	ready.Add(callers)
	var down atomic.Bool
	var outage [callers]atomic.Bool
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			kind := kinds[i%len(kinds)]
			var answered sync.Once
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				// One caller in three of each kind sets no deadline:
				// its calls end with the outage (ErrUnavailable), not
				// with a context.
				ctx, cancel := context.WithCancel(t.Context())
				timeout := time.Duration(0)
				if i/len(kinds)%3 != 0 {
					timeout = time.Duration(200+(i*37+n*53)%800) * time.Millisecond
					ctx, cancel = context.WithTimeout(t.Context(), timeout)
				}
				began, after := time.Now(), down.Load()
				err := call(ctx, i)
				took := time.Since(began)
				cancel()
				switch {
				case err == nil:
					answered.Do(ready.Done)
				case errors.Is(err, eventstore.ErrUnavailable),
					timeout > 0 && errors.Is(err, context.DeadlineExceeded):
					if after {
						outage[i].Store(true)
					}
				default:
					report("%s (caller %d): %v, want success, ErrUnavailable or its deadline", kind, i, err)
				}
				if timeout > 0 && took > timeout+5*time.Second {
					report("%s (caller %d) with a %v deadline returned after %v", kind, i, timeout, took)
				}
			}
		})
	}

	readied := make(chan struct{})
	go func() { ready.Wait(); close(readied) }()
	select {
	case <-readied:
	case <-time.After(30 * time.Second):
		close(stop)
		t.Fatalf("not every caller had a call answered within 30 s on a healthy node")
	}
	srv.Stop()
	down.Store(true)
	// The outage lasts 3 s: the first discovery fails after about 1.5 s,
	// then a renewal's.
	time.Sleep(3 * time.Second)
	close(stop)

	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Errorf("with the node gone, %d callers at once: some call has not returned 30 s after the callers were told to stop (stranded in the client, whatever its context says)", callers)
	}
	closed := make(chan error, 1)
	go func() { closed <- st.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("Close has not returned within 15 s of the callers stopping")
	}
	mu.Lock()
	for _, p := range problems {
		t.Error(p)
	}
	mu.Unlock()
	// Every caller met the outage: without a deadline, as
	// ErrUnavailable.
	for i := range callers {
		if !outage[i].Load() {
			t.Errorf("%s (caller %d): no call begun after the node went away failed with ErrUnavailable (or its deadline)", kinds[i%len(kinds)], i)
		}
	}
	if t.Failed() {
		return
	}
	if _, err := st.Append(t.Context(), "s-0", eventstore.Any, added("late")); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
	// The goroutines a failed discovery strands inside the client stay
	// (see docs/eventstoredb.md), one per call in flight at most; the
	// others leave once their contexts have ended.
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := inClient() - base
		if left <= callers {
			t.Logf("%d goroutines left inside the client", left)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left inside the client 20 s after Close; want at most %d (one per call in flight when the node went away)", left, callers)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
