package esdb

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/eventstore/esdb/esdbtest"
	"github.com/brainhq/eventstream/eventstore/storetest"
)

// TestFeedBuffersAtMostMaxPageBytes: a subscription's reader buffers events
// ahead of Next, at most BatchSize of them; it also stops at about
// MaxPageBytes, or a subscriber that is slow to call Next would hold a
// gigabyte of near-maximum events.
func TestFeedBuffersAtMostMaxPageBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg, err := storetest.Registry()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := esdbtest.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	st, err := New(ctx, srv.URL(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	const n = 2*eventstore.MaxPageBytes/(900<<10) + 2
	note := make([]byte, 450<<10)
	for i := range n {
		for j := range note {
			note[j] = byte(i*31 + j*7 + j>>8)
		}
		payload, _ := json.Marshal(map[string]any{"name": fmt.Sprint("big-", i), "note": hex.EncodeToString(note)})
		e := eventstore.Event{Type: storetest.TypeAdded, Source: "feed-test", Payload: payload,
			Meta: eventstore.Meta{SchemaVersion: 1, TenantID: "tenant-a"}}
		if _, err := st.Append(ctx, "big", eventstore.Any, e); err != nil {
			t.Fatal(err)
		}
	}

	s, err := st.Subscribe(ctx, eventstore.SubscribeOptions{BatchSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub := s.(*subscription)
	sub.mu.Lock()
	f := sub.cur
	sub.mu.Unlock()

	// Wait until the reader has buffered MaxPageBytes, then give it time to
	// buffer more if it would.
	deadline := time.Now().Add(time.Minute)
	for f.buffered.Load() < eventstore.MaxPageBytes {
		if time.Now().After(deadline) {
			t.Fatalf("the reader buffered %d bytes in a minute; want it to reach MaxPageBytes (%d)", f.buffered.Load(), eventstore.MaxPageBytes)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if got, most := f.buffered.Load(), int64(eventstore.MaxPageBytes+eventstore.MaxEventBytes); got >= most {
		t.Fatalf("the reader buffered %d bytes (%d events) ahead of Next; want less than %d", got, len(f.events), most)
	}

	got := 0
	for got < n {
		evs, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d events: %v", got, err)
		}
		got += len(evs)
	}
	if got != n {
		t.Fatalf("Next delivered %d events, want %d", got, n)
	}
}
