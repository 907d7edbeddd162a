package esdbtest

import (
	"encoding/json"
	"sort"
	"strings"
	"sync"

	"github.com/google/uuid"
)

// noStream is EventStoreDB's "last event number" of a stream that has no
// events, and the expected version that asks for one.
const noStream = -1

// firstLogPosition is where the first event goes. A real transaction file
// starts with records of its own (an epoch record, for one), so no event of
// EventStoreDB ever sits at position 0, which the client reserves for
// "start of $all".
const firstLogPosition = 512

// record is one stored event. It never changes once appended.
type record struct {
	stream      string
	number      int64 // revision in its stream, from 0
	id          uuid.UUID
	eventType   string
	contentType string
	created     int64 // .NET ticks (100 ns) since the Unix epoch
	data        []byte
	custom      []byte
	// pos is the event's log position, used for both commit and prepare
	// position: EventStoreDB's AllReader reports an event written by an
	// implicit transaction (every gRPC append) at TFPos(LogPosition,
	// LogPosition) (src/EventStore.Core/Services/Storage/ReaderIndex/AllReader.cs).
	pos uint64
}

// tfPos is a $all position: commit, then prepare.
type tfPos struct{ commit, prepare uint64 }

func (p tfPos) less(q tfPos) bool {
	return p.commit < q.commit || (p.commit == q.commit && p.prepare < q.prepare)
}

func (r *record) tfPos() tfPos { return tfPos{r.pos, r.pos} }

type stream struct {
	records []*record
	// tombstoned: the stream was hard-deleted (Tombstone). Its tombstone
	// record is in $all only: records[i] stays revision i.
	tombstoned bool
}

func (s *stream) last() int64 {
	if s == nil {
		return noStream
	}
	return int64(len(s.records)) - 1
}

// memLog is the whole database: $all and the streams, in memory.
type memLog struct {
	mu      sync.Mutex
	all     []*record // append-only; readers may keep a prefix without the lock
	streams map[string]*stream
	// committed is EventStoreDB's "committed events" index, event id to
	// stream and number, consulted by the idempotency checks. EventStoreDB
	// keeps a bounded cache of recent ids; the stand-in keeps every id,
	// so a retry it treats as idempotent might, long after the original
	// write, be treated as new by a real server.
	committed map[uuid.UUID]eventInfo
	end       uint64        // log position of the next record
	changed   chan struct{} // closed and replaced on every append
}

type eventInfo struct {
	stream string
	number int64
}

func newMemLog() *memLog {
	return &memLog{
		streams:   map[string]*stream{},
		committed: map[uuid.UUID]eventInfo{},
		end:       firstLogPosition,
		changed:   make(chan struct{}),
	}
}

// proposed is one event of an append request.
type proposed struct {
	id          uuid.UUID
	eventType   string
	contentType string
	data        []byte
	custom      []byte
}

// decision is what the commit check decided about an append.
type decision int

const (
	decisionWrite decision = iota
	decisionIdempotent
	decisionWrongExpectedVersion
	// decisionStreamDeleted: CommitDecision.Deleted, which the server
	// answers with RpcExceptions.StreamDeleted.
	decisionStreamDeleted
)

// appendResult is what an append answers: the stream's last event number
// and the log position of the last event written (or, for an idempotent
// retry, of the last event of the original write).
type appendResult struct {
	decision decision
	current  int64 // the stream's last event number (noStream if none)
	last     *record
}

// expected is an append's expected revision, as EventStoreDB numbers it:
// an event number, noStream, or one of the two below.
const (
	expectAny          = -2
	expectStreamExists = -4
)

// append runs EventStoreDB's commit check and, if it says so, writes.
//
// The rules are those of IndexWriter.CheckCommit
// (src/EventStore.Core/Services/Storage/ReaderIndex/IndexWriter.cs) and of
// the documented "Optimistic concurrency & idempotence" behaviour
// (docs.geteventstore.com/dotnet-api/4.0.0/optimistic-concurrency-and-idempotence/):
//
//   - stream_exists on a stream with no events and no metadata stream
//     ("$$"+stream): wrong expected version. A stream that has metadata
//     but no events satisfies stream_exists ("If it or a metadata stream
//     does not exist, treat that as a concurrency problem").
//   - any and stream_exists: if the first event's id is not a committed
//     event of this stream, write; if it is and so are all the others,
//     the append is an idempotent retry (acknowledged, nothing written,
//     the original event numbers returned); if only some are, it is
//     "corrupted idempotency", answered as wrong expected version.
//   - an exact revision (or no_stream) below the stream's last event
//     number: compare the ids of the stored events that follow the
//     expected revision with the append's ids; all equal is an idempotent
//     retry; the first different is wrong expected version; a later
//     different one is corrupted idempotency (wrong expected version).
//   - an exact revision above the last event number: wrong expected
//     version.
//   - equal: write.
//
// Deleted streams, as EventStoreDB 22.x to 24.x check them (CheckCommit
// there: CommitDecision.Deleted; see delete.go for the sources):
//
//   - a tombstoned stream: stream deleted, whatever the expected revision
//     and ids (before any idempotency check);
//   - stream_exists on a soft-deleted stream: stream deleted;
//   - no_stream on a soft-deleted stream whose first id is not stored at
//     revision 0: write. Any write to a soft-deleted stream recreates it:
//     its events go on after the deleted ones, and undelete sets $tb to
//     the first of them.
func (l *memLog) append(streamName string, expected int64, events []proposed, created int64, size func(proposed) uint64) appendResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.streams[streamName]
	cur := s.last()
	wrong := appendResult{decision: decisionWrongExpectedVersion, current: cur}
	if s != nil && s.tombstoned {
		return appendResult{decision: decisionStreamDeleted, current: cur}
	}
	soft := l.softDeletedLocked(streamName)
	// A write to a soft-deleted stream recreates it (see undelete).
	write := func() appendResult {
		res := l.write(streamName, s, events, created, size)
		if soft {
			l.undelete(streamName, cur+1, created)
		}
		return res
	}

	if expected == expectStreamExists && soft {
		return appendResult{decision: decisionStreamDeleted, current: cur}
	}
	if expected == expectStreamExists && cur == noStream && l.streams["$$"+streamName] == nil {
		return wrong
	}
	if expected == expectAny || expected == expectStreamExists {
		if len(events) == 0 {
			return write()
		}
		var end int64 = -1
		for i, e := range events {
			info, ok := l.committed[e.id]
			if !ok || info.stream != streamName {
				if i == 0 {
					return write()
				}
				return wrong // corrupted idempotency
			}
			end = info.number
		}
		return appendResult{decision: decisionIdempotent, current: cur, last: s.records[end]}
	}
	if expected < cur {
		n := expected
		for i, e := range events {
			n++
			if n <= cur && s.records[n].id == e.id {
				continue
			}
			// no_stream on a soft-deleted stream whose first event is
			// new recreates the stream.
			if i == 0 && expected == noStream && soft {
				return write()
			}
			// The first differs: wrong expected version; a later one:
			// corrupted idempotency, which is answered the same way.
			return wrong
		}
		if n == expected { // no events
			return wrong
		}
		return appendResult{decision: decisionIdempotent, current: cur, last: s.records[n]}
	}
	if expected > cur {
		return wrong
	}
	return write()
}

func (l *memLog) write(streamName string, s *stream, events []proposed, created int64, size func(proposed) uint64) appendResult {
	if len(events) == 0 {
		return appendResult{decision: decisionWrite, current: s.last()}
	}
	if s == nil {
		s = &stream{}
		l.streams[streamName] = s
	}
	var r *record
	for _, e := range events {
		r = &record{
			stream:      streamName,
			number:      int64(len(s.records)),
			id:          e.id,
			eventType:   e.eventType,
			contentType: e.contentType,
			created:     created,
			data:        e.data,
			custom:      e.custom,
			pos:         l.end,
		}
		// Positions are byte offsets in a real transaction file: they grow
		// by each record's size, so they are ordered but not consecutive.
		l.end += size(e)
		s.records = append(s.records, r)
		l.all = append(l.all, r)
		l.committed[e.id] = eventInfo{stream: streamName, number: r.number}
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return appendResult{decision: decisionWrite, current: s.last(), last: r}
}

// snapshot returns the records of $all stored so far and a channel closed
// on the next append.
func (l *memLog) snapshot() ([]*record, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all, l.changed
}

// streamRecords returns a stream's records and whether it exists.
func (l *memLog) streamRecords(name string) ([]*record, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.streams[name]
	if !ok {
		return nil, false
	}
	return s.records, true
}

// metadataEventType is the type of the events of a metadata stream
// ("$$" + stream name), as the client's SetStreamMetadata writes them.
const metadataEventType = "$metadata"

// retention is the part of a stream's metadata that hides events from
// stream reads: $tb (truncate before: the first revision kept), $maxCount
// (how many of the last events are kept) and $maxAge (seconds an event is
// kept after it was written). The client's SetStreamMetadata writes them
// as JSON integers ($maxAge in whole seconds).
type retention struct {
	TruncateBefore *uint64 `json:"$tb"`
	MaxCount       *uint64 `json:"$maxCount"`
	MaxAge         *int64  `json:"$maxAge"`
}

// firstVisible is the first revision of a stream that stream reads still
// return at time now (.NET ticks), as the stream's latest metadata event
// ("$metadata" in "$$"+name) sets it; len(records) if it hides them all.
// EventStoreDB applies $tb, $maxCount and $maxAge to stream reads at once,
// before any scavenge: a forward read from an earlier revision starts at
// the first event kept ("Set TruncateBefore to 81, read 10 events forwards
// from position 0: events 81 to 90 will be returned", kurrent-io/KurrentDB#2631;
// the three settings as KurrentDB's documentation describes them, server
// docs, "Event streams", "Stream metadata": "when data reaches a certain length/age it automatically
// disappears from the stream"). The hidden events stay in $all until a
// scavenge, and the stream's last revision does not move, so appends go on
// numbering from it ("the version numbers do not start at zero but at where
// you soft deleted the stream from", EventStoreDB's HTTP API docs,
// "Deleting a stream"). $tb at its largest value is a soft delete
// (softDeletedLocked): reads answer stream_not_found instead. The stand-in
// never scavenges and applies no metadata to metadata streams.
func (l *memLog) firstVisible(name string, now int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.streams[name]
	r, ok := l.retentionLocked(name)
	if s == nil || !ok {
		return 0
	}
	n := int64(len(s.records))
	first := int64(0)
	if r.TruncateBefore != nil {
		first = int64(min(*r.TruncateBefore, uint64(n)))
	}
	if r.MaxCount != nil && *r.MaxCount < uint64(n) {
		first = max(first, n-int64(*r.MaxCount))
	}
	if r.MaxAge != nil && *r.MaxAge > 0 {
		cutoff := now - *r.MaxAge*10_000_000 // seconds to ticks
		for first < n && s.records[first].created < cutoff {
			first++
		}
	}
	return first
}

// retentionLocked is what the stream's latest metadata event sets, if it
// has one the stand-in reads. Metadata streams have none.
func (l *memLog) retentionLocked(name string) (retention, bool) {
	meta := l.streams["$$"+name]
	if meta == nil || len(meta.records) == 0 || strings.HasPrefix(name, "$$") {
		return retention{}, false
	}
	m := meta.records[len(meta.records)-1]
	var r retention
	if m.eventType != metadataEventType || json.Unmarshal(m.data, &r) != nil {
		return retention{}, false
	}
	return r, true
}

// validPosition reports whether a $all read or subscription may start at
// p. EventStoreDB repositions its reader at the commit position, which must
// be the start of a record (or the end of the log); anywhere else it
// answers "Trying to read from an invalid position" (EventStore PRs #3963,
// #3991, #4128). The prepare position may be anything: events before it in
// the same commit are skipped.
func validPosition(all []*record, end uint64, p tfPos) bool {
	if p.commit == 0 || p.commit >= end {
		return true
	}
	i := sort.Search(len(all), func(i int) bool { return all[i].pos >= p.commit })
	return i < len(all) && all[i].pos == p.commit
}

// firstAtOrAfter is the index of the first record whose position is >= p.
func firstAtOrAfter(all []*record, p tfPos) int {
	return sort.Search(len(all), func(i int) bool { return !all[i].tfPos().less(p) })
}

// firstAfter is the index of the first record whose position is > p.
func firstAfter(all []*record, p tfPos) int {
	return sort.Search(len(all), func(i int) bool { return p.less(all[i].tfPos()) })
}

func (l *memLog) endPosition() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.end
}
