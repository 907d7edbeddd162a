package reliability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/faultproxy"
	"github.com/brainhq/eventstream/internal/pgcluster"
)

// partitionHold is how long a partition lasts: past the server's 5 s
// bound on an idle append transaction (appendIdleTimeout in
// eventstore/postgres), so that only that bound can free the lock.
const partitionHold = 6500 * time.Millisecond

// TestPartitionedWriterDoesNotBlockOtherProcesses partitions one process
// (its network hangs, nothing is closed) in the middle of an append, for
// partitionHold, on each of the two paths of a group. The server cannot
// tell a hung client from a slow one: a process that took the append lock
// in an earlier round trip would block every other process's appends for
// as long as the partition lasts.
//
//   - one-round-trip: the call of eventstream_append is held half-way,
//     the statement prepared and the first chunk of its Bind delivered,
//     the rest held. The function takes the lock only once the whole call
//     has arrived, so another process appends at once, long before the
//     partition ends.
//   - careful-path: a retry of a stored append (its id is stored, so the
//     group runs writeGroupChecked) is held after the round trip that took
//     the lock, with the lock held by a transaction idle on the server. The
//     server ends that session after idle_in_transaction_session_timeout
//     (5 s), so another process appends within 7 s, while the partition
//     still lasts.
//
// Either way the partitioned call ends with its result or an error, a
// retry with the same ids gets the original result, and the log holds
// each event once (the checks of the fault tests, verifyLog).
func TestPartitionedWriterDoesNotBlockOtherProcesses(t *testing.T) {
	t.Run("one-round-trip", partitionOneRoundTrip)
	t.Run("careful-path", partitionCarefulPath)
}

// partitionEnv is two processes on one cluster: a reaches it through a
// proxy that the test stalls, b directly.
type partitionEnv struct {
	proxy *faultproxy.Proxy
	a, b  *postgres.Store
	led   *ledger

	stallStart atomic.Int64 // unix nanoseconds; 0 until the stall began
}

func newPartitionEnv(t *testing.T) *partitionEnv {
	t.Helper()
	cluster := pgcluster.Start(t)
	proxy, err := faultproxy.New(cluster.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	reg := registry(t)
	e := &partitionEnv{proxy: proxy, led: newLedger()}
	e.a = openStore(t, openPool(t, strings.Replace(cluster.URL(""), cluster.Addr(), proxy.Addr(), 1), 4), reg, postgres.Options{})
	e.b = openStore(t, openPool(t, cluster.URL(""), 4), reg, postgres.Options{SkipMigrate: true})
	return e
}

// stallOn stalls all of a's traffic, open and new connections alike, from
// the first chunk to the server that match accepts (that chunk included).
func (e *partitionEnv) stallOn(match func(data []byte) bool) {
	e.proxy.SetCut(func(c faultproxy.Chunk) bool {
		if c.Dir == faultproxy.ToServer && e.stallStart.Load() == 0 && match(c.Data) &&
			e.stallStart.CompareAndSwap(0, time.Now().UnixNano()) {
			e.proxy.SetStall(true)
		}
		return false
	})
}

func (e *partitionEnv) sinceStall() time.Duration {
	return time.Since(time.Unix(0, e.stallStart.Load()))
}

// lift ends the partition once it has lasted partitionHold.
func (e *partitionEnv) lift() time.Duration {
	time.Sleep(partitionHold - e.sinceStall())
	held := e.sinceStall()
	e.proxy.SetStall(false)
	e.proxy.SetCut(nil)
	return held
}

// appendOnce makes one logical append of one event, acknowledged at the
// first attempt, and records it.
func (e *partitionEnv) appendOnce(t *testing.T, s *postgres.Store, writer int, stream string, ev eventstore.Event) (*appendRecord, eventstore.AppendResult) {
	t.Helper()
	rec := &appendRecord{writer: writer, stream: stream, ids: []uuid.UUID{ev.ID}, attempts: 1}
	e.led.add(rec)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s.Append(ctx, stream, eventstore.Any, ev)
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	rec.acked, rec.result = true, res
	e.led.ackedEvents.Add(1)
	return rec, res
}

// startPartitioned starts a's append of ev as a further attempt of rec.
func (e *partitionEnv) startPartitioned(rec *appendRecord, ev eventstore.Event) <-chan partitionedCall {
	rec.attempts++
	done := make(chan partitionedCall, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := e.a.Append(ctx, rec.stream, eventstore.Any, ev)
		done <- partitionedCall{res, err}
	}()
	return done
}

type partitionedCall struct {
	res eventstore.AppendResult
	err error
}

// otherAppends is b's append while a is partitioned: it must succeed
// within bound of the start of the stall; it returns how long after.
func (e *partitionEnv) otherAppends(t *testing.T, bound time.Duration) time.Duration {
	t.Helper()
	ev := probe(2, 1, 0)
	rec := &appendRecord{writer: 2, stream: "elsewhere", ids: []uuid.UUID{ev.ID}, attempts: 1}
	e.led.add(rec)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := e.b.Append(ctx, rec.stream, eventstore.Any, ev)
	after := e.sinceStall()
	if err != nil {
		rec.abandoned = true
		t.Fatalf("while one process is partitioned inside its append, another could not append (%s after the stall began): %v", after.Round(100*time.Millisecond), err)
	}
	rec.acked, rec.result = true, res
	e.led.ackedEvents.Add(1)
	if after > bound {
		t.Errorf("while one process is partitioned inside its append, another appended only %s after the stall began, want within %s: the hung process holds the append lock",
			after.Round(100*time.Millisecond), bound)
	}
	return after
}

// finishPartitioned waits for the partitioned call, once the partition is
// over; on an error it retries with the same event (a retry of a stored
// append must get its original result). It returns how the partitioned
// call ended, and its error (nil if it was acknowledged).
func (e *partitionEnv) finishPartitioned(t *testing.T, rec *appendRecord, ev eventstore.Event, done <-chan partitionedCall, original *eventstore.AppendResult) (string, error) {
	t.Helper()
	var call partitionedCall
	select {
	case call = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the partitioned append did not end within 30s of the end of the partition")
	}
	outcome, heldErr := "acknowledged", call.err
	if call.err != nil {
		outcome = "error: " + call.err.Error()
		e.led.failed(rec, call.err)
		rec.attempts++
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		call.res, call.err = e.a.Append(ctx, rec.stream, eventstore.Any, ev)
		cancel()
		if call.err != nil {
			e.led.failed(rec, call.err)
			if !rec.acked {
				rec.abandoned = true
			}
			t.Errorf("the retry of the partitioned append after the partition: %v", call.err)
			return outcome, heldErr
		}
		outcome += "; the retry was acknowledged"
	}
	if original != nil {
		if len(call.res.Events) != 1 || call.res.Events[0].ID != ev.ID ||
			call.res.Events[0].Position != original.Events[0].Position || call.res.Events[0].Version != original.Events[0].Version {
			t.Errorf("the partitioned retry of a stored append returned %+v, not its original result %+v", call.res.Events, original.Events)
		}
		outcome += " with the original result"
	}
	if !rec.acked {
		e.led.ackedEvents.Add(1)
	}
	rec.acked, rec.result = true, call.res
	return outcome, heldErr
}

func (e *partitionEnv) report(t *testing.T, path string, held, other time.Duration, outcome string, extra map[string]any) {
	t.Helper()
	fg := verifyLog(t, readLog(t, e.b.Pool()), e.led)
	if fg.Lost != 0 || fg.Duplicated != 0 || fg.Partial != 0 {
		t.Errorf("lost %d, duplicated %d, partly written %d", fg.Lost, fg.Duplicated, fg.Partial)
	}
	fg.Faults = 1
	fg.Extra = map[string]any{
		"path":                   path,
		"partition_s":            held.Round(time.Millisecond).Seconds(),
		"other_appended_after_s": other.Round(time.Millisecond).Seconds(),
		"partitioned_call":       outcome,
	}
	for k, v := range extra {
		fg.Extra[k] = v
	}
	t.Logf("partition of %s: the other process appended %s after it began; the partitioned call: %s",
		held.Round(time.Millisecond), other.Round(time.Millisecond), outcome)
	report(t, fg)
}

// partitionOneRoundTrip holds a's call of eventstream_append half-way to
// the server.
func partitionOneRoundTrip(t *testing.T) {
	e := newPartitionEnv(t)
	// Only b warms up: a's first call must carry its statement text (pgx
	// sends it once per connection, then only the prepared name).
	e.appendOnce(t, e.b, 1, "warm-up", probe(1, 0, 0))

	// Hold the call half-arrived: the server has prepared the statement
	// and holds the first chunk of its Bind (a 100 KiB event spans
	// several), the rest is held. Holding the whole call would prove
	// nothing: a call the server has not seen cannot hold a lock.
	var callConn atomic.Uint64
	var bindStarted atomic.Bool
	e.proxy.SetCut(func(c faultproxy.Chunk) bool {
		if c.Dir != faultproxy.ToServer || e.stallStart.Load() != 0 {
			return false
		}
		switch {
		case bytes.Contains(c.Data, []byte("eventstream_append(")):
			callConn.CompareAndSwap(0, c.Conn) // the Prepare: its Parse carries the text
		case c.Conn != callConn.Load():
		case !bindStarted.Load():
			bindStarted.Store(bytes.Contains(c.Data, appendCall)) // the Bind's first chunk goes through
		case e.stallStart.CompareAndSwap(0, time.Now().UnixNano()):
			e.proxy.SetStall(true)
		}
		return false
	})
	stuck := probe(0, 1, 0)
	stuck.Payload = json.RawMessage(fmt.Sprintf(`{"writer":0,"seq":1,"i":0,"note":%q}`, strings.Repeat("x", 100<<10)))
	rec := &appendRecord{writer: 0, stream: "partitioned", ids: []uuid.UUID{stuck.ID}}
	e.led.add(rec)
	done := e.startPartitioned(rec, stuck)
	waitFor(t, 10*time.Second, func() bool { return e.stallStart.Load() != 0 },
		func() string {
			return fmt.Sprintf("the partitioned append never sent its call half-way (prepared on connection %d, Bind started %v)", callConn.Load(), bindStarted.Load())
		})

	// No lock is held: the other process appends at once, well before the
	// server's 5 s bound on an idle transaction could matter.
	other := e.otherAppends(t, 3*time.Second)
	held := e.lift()
	outcome, heldErr := e.finishPartitioned(t, rec, stuck, done, nil)
	// The call held on its way took no lock and has all the time it
	// needs: once the network heals it goes through.
	if heldErr != nil {
		t.Errorf("the call held on its way was not acknowledged when the partition ended: %v", heldErr)
	}
	e.report(t, "one round trip", held, other, outcome, nil)
}

// partitionCarefulPath holds a retry of a stored append after the round
// trip of writeGroupChecked that took the append lock.
func partitionCarefulPath(t *testing.T) {
	e := newPartitionEnv(t)
	ev := probe(0, 1, 0)
	rec, original := e.appendOnce(t, e.a, 0, "partitioned", ev)

	// The retry's id is stored: eventstream_append fails on the id index
	// and the group runs writeGroupChecked, whose first round trip sets
	// the idle bound and takes the lock; stall the second (the commit).
	var tookLock atomic.Bool
	e.stallOn(func(data []byte) bool {
		if bytes.Contains(data, []byte("idle_in_transaction_session_timeout")) {
			tookLock.Store(true)
			return false
		}
		return tookLock.Load() && bytes.Contains(data, []byte("COMMIT"))
	})
	done := e.startPartitioned(rec, ev)
	waitFor(t, 10*time.Second, func() bool { return e.stallStart.Load() != 0 },
		func() string { return "the retry never reached the commit of the careful path" })

	// Proof that the stall holds what it should: a session of a sits idle
	// in its transaction holding the append lock.
	var pid int32
	var lastErr error
	waitFor(t, 3*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		lastErr = e.b.Pool().QueryRow(ctx, `SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND a.state = 'idle in transaction'`).Scan(&pid)
		return lastErr == nil
	}, func() string {
		return fmt.Sprintf("no session is idle in transaction holding the append lock (%v): the stall does not hold the careful path's lock, so the test proves nothing", lastErr)
	})

	// The server ends that session after 5 s idle; the other process then
	// gets the lock.
	other := e.otherAppends(t, 7*time.Second)
	// A backend the server ends releases its locks before it leaves
	// pg_stat_activity: give the exit a moment (the partition, which
	// alone could end the session from a's side, lasts until lift).
	var alive bool
	for deadline := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := e.b.Pool().QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)`, pid).Scan(&alive)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !alive || time.Now().After(deadline) {
			break
		}
	}
	if alive {
		t.Errorf("the partitioned session %d still exists after the other process appended", pid)
	}
	held := e.lift()
	outcome, heldErr := e.finishPartitioned(t, rec, ev, done, &original)
	// What freed the lock must be the server's idle bound (SQLSTATE
	// 25P03, idle_in_transaction_session_timeout), not anything else
	// ending the session.
	if heldErr == nil || !strings.Contains(heldErr.Error(), "25P03") {
		t.Errorf("the held careful-path call ended with %v, want the server's idle-in-transaction timeout (SQLSTATE 25P03)", heldErr)
	}
	e.report(t, "careful (writeGroupChecked)", held, other, outcome, map[string]any{"server_ended_session": !alive})
}
