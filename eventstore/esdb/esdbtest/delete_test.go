package esdbtest_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

func wantCode(t *testing.T, what string, err error, code client.ErrorCode) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) || e.Code() != code {
		t.Fatalf("%s: %v, want error code %d", what, err, code)
	}
}

func revisions(evs []*client.ResolvedEvent) string {
	var b []string
	for _, e := range evs {
		b = append(b, fmt.Sprint(e.OriginalEvent().EventNumber))
	}
	return strings.Join(b, ",")
}

// A soft-deleted stream (Streams.Delete) reads as stream_not_found,
// forwards and backwards, and keeps its events in $all. An append with
// any, no_stream or its last revision recreates it: revisions go on after
// the deleted ones and the server sets $tb to the first new one, so the
// old events stay hidden; then no_stream is wrong again, and stream_exists
// on a soft-deleted stream is stream deleted (EventStore-Client-Dotnet,
// soft_deleted_stream.cs; StorageWriterService.WriteDelete and
// SoftUndeleteStream, IndexReader, IndexWriter.CheckCommit: see delete.go).
func TestProtocolStandIn_SoftDelete(t *testing.T) {
	t.Parallel()
	_, c := standIn(t)
	ctx := t.Context()

	// A stream without events or metadata cannot be soft-deleted.
	_, err := c.DeleteStream(ctx, "none", client.DeleteStreamOptions{ExpectedRevision: client.Any{}})
	wantCode(t, "soft delete of a missing stream", err, client.ErrorCodeUnknown)
	if !strings.Contains(err.Error(), "WrongExpectedVersion") {
		t.Fatalf("soft delete of a missing stream: %v, want wrong expected version", err)
	}

	for _, exp := range []struct {
		name string
		rev  func(last uint64) client.ExpectedRevision
	}{
		{"any", func(uint64) client.ExpectedRevision { return client.Any{} }},
		{"no_stream", func(uint64) client.ExpectedRevision { return client.NoStream{} }},
		{"revision", func(last uint64) client.ExpectedRevision { return client.Revision(last) }},
	} {
		s := "s-" + exp.name
		appendTo(t, c, s, client.NoStream{}, event("a"), event("a"))
		// A delete with a wrong expected revision is refused.
		if _, err := c.DeleteStream(ctx, s, client.DeleteStreamOptions{ExpectedRevision: client.Revision(0)}); err == nil {
			t.Fatalf("%s: soft delete expecting revision 0 of a stream at 1 succeeded", s)
		}
		del, err := c.DeleteStream(ctx, s, client.DeleteStreamOptions{ExpectedRevision: client.Revision(1)})
		if err != nil {
			t.Fatalf("%s: soft delete: %v", s, err)
		}
		if del.Position.Commit == 0 {
			t.Fatalf("%s: soft delete answered no position", s)
		}
		for _, opts := range []client.ReadStreamOptions{{}, {Direction: client.Backwards, From: client.End{}}} {
			_, err := readStream(t, c, s, opts, 10)
			wantCode(t, s+": read of a soft-deleted stream", err, client.ErrorCodeResourceNotFound)
		}
		_, err = c.AppendToStream(ctx, s, client.AppendToStreamOptions{ExpectedRevision: client.StreamExists{}}, event("a"))
		wantCode(t, s+": stream_exists on a soft-deleted stream", err, client.ErrorCodeStreamDeleted)

		res := appendTo(t, c, s, exp.rev(1), event("b"), event("b"), event("b"))
		if res.NextExpectedVersion != 4 {
			t.Fatalf("%s: append recreating the stream: next expected %d, want 4", s, res.NextExpectedVersion)
		}
		evs, err := readStream(t, c, s, client.ReadStreamOptions{}, 10)
		if err != nil || revisions(evs) != "2,3,4" {
			t.Fatalf("%s: recreated stream reads revisions %q, %v; want 2,3,4", s, revisions(evs), err)
		}
		md, err := c.GetStreamMetadata(ctx, s, client.ReadStreamOptions{Direction: client.Backwards, From: client.End{}})
		if err != nil {
			t.Fatal(err)
		}
		if tb := md.TruncateBefore(); tb == nil || *tb != 2 {
			t.Fatalf("%s: $tb after recreation %d, want 2", s, *md.TruncateBefore())
		}
		_, err = c.AppendToStream(ctx, s, client.AppendToStreamOptions{ExpectedRevision: client.NoStream{}}, event("c"))
		wantWrongVersion(t, err, "4")
	}

	// $all keeps the deleted events, and holds the $metadata events.
	all, err := readAll(t, c, client.ReadAllOptions{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, e := range all {
		per[e.OriginalEvent().StreamID]++
	}
	if per["s-any"] != 5 || per["$$s-any"] != 2 {
		t.Fatalf("$all holds %v events per stream, want 5 of s-any and 2 of $$s-any", per)
	}
}

// A tombstoned stream (Streams.Tombstone) fails every read, of it and of
// its metadata stream, and every append and delete, with stream deleted,
// soft-deleted first or not; $all keeps its events and holds the
// "$streamDeleted" record at revision 2^63-1; a subscription to it is
// confirmed, then fails with stream deleted (EventStore-Client-Dotnet,
// soft_deleted_stream.cs can_be_hard_deleted; delete.go).
func TestProtocolStandIn_Tombstone(t *testing.T) {
	t.Parallel()
	_, c := standIn(t)
	ctx := t.Context()
	appendTo(t, c, "t", client.NoStream{}, event("a"), event("a"))
	appendTo(t, c, "soft", client.NoStream{}, event("a"))
	if _, err := c.DeleteStream(ctx, "soft", client.DeleteStreamOptions{ExpectedRevision: client.Any{}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"t", "soft", "never"} {
		if _, err := c.TombstoneStream(ctx, s, client.TombstoneStreamOptions{ExpectedRevision: client.Any{}}); err != nil {
			t.Fatalf("tombstone %s: %v", s, err)
		}
		for _, opts := range []client.ReadStreamOptions{{}, {Direction: client.Backwards, From: client.End{}}} {
			_, err := readStream(t, c, s, opts, 10)
			wantCode(t, "read of tombstoned "+s, err, client.ErrorCodeStreamDeleted)
			if !strings.Contains(err.Error(), "'"+s+"'") {
				t.Fatalf("read of tombstoned %s: %v does not name the stream", s, err)
			}
		}
		_, err := c.GetStreamMetadata(ctx, s, client.ReadStreamOptions{})
		wantCode(t, "metadata of tombstoned "+s, err, client.ErrorCodeStreamDeleted)
		for _, exp := range []client.ExpectedRevision{client.Any{}, client.NoStream{}, client.StreamExists{}, client.Revision(1)} {
			_, err := c.AppendToStream(ctx, s, client.AppendToStreamOptions{ExpectedRevision: exp}, event("b"))
			wantCode(t, fmt.Sprintf("append %T to tombstoned %s", exp, s), err, client.ErrorCodeStreamDeleted)
		}
		_, err = c.TombstoneStream(ctx, s, client.TombstoneStreamOptions{ExpectedRevision: client.Any{}})
		wantCode(t, "tombstone of tombstoned "+s, err, client.ErrorCodeStreamDeleted)
		_, err = c.DeleteStream(ctx, s, client.DeleteStreamOptions{ExpectedRevision: client.Any{}})
		wantCode(t, "delete of tombstoned "+s, err, client.ErrorCodeStreamDeleted)
	}

	all, err := readAll(t, c, client.ReadAllOptions{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ts []string
	for _, e := range all {
		r := e.OriginalEvent()
		if r.StreamID == "t" && r.EventType != "$streamDeleted" && r.EventNumber > 1 {
			t.Fatalf("$all: event %d of t", r.EventNumber)
		}
		if r.EventType == "$streamDeleted" {
			if r.EventNumber != math.MaxInt64 || len(r.Data) != 0 {
				t.Fatalf("tombstone of %s at revision %d with %d bytes, want %d and none", r.StreamID, r.EventNumber, len(r.Data), int64(math.MaxInt64))
			}
			ts = append(ts, r.StreamID)
		}
	}
	if strings.Join(ts, ",") != "t,soft,never" {
		t.Fatalf("$all holds tombstones of %v, want t, soft, never", ts)
	}

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sub, err := c.SubscribeToStream(sctx, "t", client.SubscribeToStreamOptions{From: client.Start{}})
	if err != nil {
		t.Fatalf("subscribe to a tombstoned stream: %v (the server confirms first)", err)
	}
	defer sub.Close()
	for {
		ev := sub.Recv()
		if ev.EventAppeared != nil {
			t.Fatalf("subscription to a tombstoned stream delivered %s@%d", ev.EventAppeared.OriginalEvent().EventType, ev.EventAppeared.OriginalEvent().EventNumber)
		}
		if ev.SubscriptionDropped != nil {
			if !strings.Contains(ev.SubscriptionDropped.Error.Error(), "is deleted") {
				t.Fatalf("subscription to a tombstoned stream dropped with %v, want stream deleted", ev.SubscriptionDropped.Error)
			}
			return
		}
	}
}
