package esdbtest

// Soft deletes and tombstones, as EventStoreDB 22.x to 24.x implement them.
// Sources (EventStore/EventStore, src/EventStore.Core; KurrentDB keeps the
// same reads and writes):
//
//   - Services/Storage/StorageWriterService.cs, WriteDelete: a soft delete
//     (Streams.Delete) writes one "$metadata" event to "$$"+stream whose
//     data is {"$tb": 9223372036854775807} (EventNumber.DeletedStream,
//     long.MaxValue) and nothing else; a stream without events or metadata
//     cannot be soft-deleted (wrong expected version). A hard delete
//     (Streams.Tombstone) writes one "$streamDeleted" record to the stream
//     itself, at event number EventNumber.DeletedStream. Both go through
//     the commit check with the request's expected revision and a new
//     event id.
//   - Same file, SoftUndeleteStream: a write to a soft-deleted stream (the
//     commit check says IsSoftDeleted) is followed by a "$metadata" event
//     that is the latest metadata with "$tb" set to the stream's first new
//     revision; other keys are kept.
//   - Services/Storage/ReaderIndex/IndexReader.cs, ReadStreamEventsForward
//     and ReadStreamEventsBackward: a tombstoned stream is
//     ReadStreamResult.StreamDeleted; a stream whose $tb is
//     EventNumber.DeletedStream is NoStream. Services/Transport/Grpc/
//     Enumerators.ReadStreamForwards.cs (and Backwards): NoStream is the
//     stream_not_found message, StreamDeleted fails the call with
//     RpcExceptions.StreamDeleted: gRPC FailedPrecondition "Event stream
//     '…' is deleted." with the trailers exception=stream-deleted and
//     stream-name (what the Go client turns into ErrorCodeStreamDeleted).
//     Streams.Append answers OperationResult.StreamDeleted the same way.
//   - Services/Storage/ReaderIndex/AllReader.cs: $all returns the
//     tombstone (prepares with the StreamDelete flag), and keeps the
//     events of a deleted stream until a scavenge.
//   - EventStore-Client-Dotnet, test/EventStore.Client.Streams.Tests/
//     soft_deleted_stream.cs: reading a soft-deleted stream throws
//     StreamNotFound; appending with any, no_stream or the last revision
//     recreates it with revisions going on (events 1 to 3 after 0) and $tb
//     1 in the second metadata event; after that, no_stream is wrong
//     expected version; a soft-deleted stream can be tombstoned, and then
//     reading it or its metadata stream, and appending, are StreamDeleted.
//
// Not modelled: a write to "$$"+stream of a soft-deleted stream
// undeleting it (SoftUndeleteMetastream), deleting metadata streams,
// subscriptions applying $tb or a soft delete (the backend subscribes to
// $all only), and scavenging.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
)

// deletedStream is EventStoreDB's EventNumber.DeletedStream: the event
// number of a tombstone, and the $tb of a soft-deleted stream.
const deletedStream = math.MaxInt64

const (
	streamDeletedEventType = "$streamDeleted"
	contentTypeJSON        = "application/json"
	contentTypeBinary      = "application/octet-stream"
)

// softDeletedLocked reports whether the stream's latest metadata sets $tb
// to deletedStream (IndexWriter.IsSoftDeleted).
func (l *memLog) softDeletedLocked(name string) bool {
	r, ok := l.retentionLocked(name)
	return ok && r.TruncateBefore != nil && *r.TruncateBefore == deletedStream
}

// deletedState is how a stream read sees deletes: tombstoned (also for
// "$$"+stream of a tombstoned stream), soft-deleted.
func (l *memLog) deletedState(name string) (tombstoned, soft bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.streams[name]; s != nil && s.tombstoned {
		return true, false
	}
	if orig, ok := strings.CutPrefix(name, "$$"); ok {
		if s := l.streams[orig]; s != nil && s.tombstoned {
			return true, false
		}
	}
	return false, l.softDeletedLocked(name)
}

// metaSize is what a metadata record adds to the log position.
func metaSize(name string, data []byte) func(proposed) uint64 {
	return func(proposed) uint64 { return uint64(len(data) + len(name) + 64) }
}

// undelete writes the stream's latest metadata again with $tb set to from
// (SoftUndeleteStream). Metadata that is not a JSON object is left alone,
// as the server does when it cannot parse it.
func (l *memLog) undelete(name string, from, created int64) {
	metaName := "$$" + name
	meta := l.streams[metaName]
	if meta == nil || len(meta.records) == 0 {
		return
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(meta.records[len(meta.records)-1].data, &obj) != nil || obj == nil {
		return
	}
	obj["$tb"] = json.RawMessage(strconv.FormatInt(from, 10))
	data, err := json.Marshal(obj)
	if err != nil {
		return
	}
	l.write(metaName, meta, []proposed{{id: uuid.New(), eventType: metadataEventType, contentType: contentTypeJSON, data: data}},
		created, metaSize(metaName, data))
}

// deleteResult is what a delete or tombstone answers.
type deleteResult struct {
	decision decision // decisionWrite, decisionWrongExpectedVersion or decisionStreamDeleted
	current  int64
	pos      uint64 // log position of the record written
}

// delete soft-deletes (hard false) or tombstones a stream after the
// commit check with a new event id (StorageWriterService.WriteDelete).
func (l *memLog) delete(name string, expected int64, hard bool, created int64) deleteResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.streams[name]
	cur := s.last()
	wrong := deleteResult{decision: decisionWrongExpectedVersion, current: cur}
	if s != nil && s.tombstoned {
		return deleteResult{decision: decisionStreamDeleted, current: cur}
	}
	soft := l.softDeletedLocked(name)
	meta := l.streams["$$"+name]
	switch {
	case expected == expectStreamExists && soft:
		return deleteResult{decision: decisionStreamDeleted, current: cur}
	case expected == expectStreamExists && cur == noStream && meta == nil:
		return wrong
	case expected == expectAny || expected == expectStreamExists:
		// The delete's id is new: it is written.
	case expected == noStream && cur > noStream && soft:
		// no_stream with a new first id on a soft-deleted stream.
	case expected != cur:
		// Below the last revision the new id is not stored there;
		// above it, the stream is not there yet.
		return wrong
	}
	if !hard {
		if cur == noStream && meta.last() == noStream {
			return deleteResult{decision: decisionWrongExpectedVersion, current: noStream}
		}
		data := []byte(`{"$tb":` + strconv.FormatInt(deletedStream, 10) + `}`)
		metaName := "$$" + name
		res := l.write(metaName, meta, []proposed{{id: uuid.New(), eventType: metadataEventType, contentType: contentTypeJSON, data: data}},
			created, metaSize(metaName, data))
		return deleteResult{decision: decisionWrite, current: cur, pos: res.last.pos}
	}
	if s == nil {
		s = &stream{}
		l.streams[name] = s
	}
	r := &record{
		stream:      name,
		number:      deletedStream,
		id:          uuid.New(),
		eventType:   streamDeletedEventType,
		contentType: contentTypeBinary,
		created:     created,
		pos:         l.end,
	}
	l.end += uint64(len(name) + 64)
	l.all = append(l.all, r)
	s.tombstoned = true
	close(l.changed)
	l.changed = make(chan struct{})
	return deleteResult{decision: decisionWrite, current: cur, pos: r.pos}
}

// errStreamDeleted is RpcExceptions.StreamDeleted; its trailers are set by
// the caller (deletedTrailer).
func errStreamDeleted(name string) error {
	return status.Errorf(codes.FailedPrecondition, "Event stream '%s' is deleted.", name)
}

func deletedTrailer(name string) metadata.MD {
	return metadata.Pairs("exception", "stream-deleted", "stream-name", name)
}

// wrongExpectedVersionErr is RpcExceptions.WrongExpectedVersion, as Delete
// and Tombstone answer it (Append answers with a message instead).
func wrongExpectedVersionErr(ctx context.Context, name string, expected, current int64) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs(
		"exception", "wrong-expected-version",
		"stream-name", name,
		"expected-version", strconv.FormatInt(expected, 10),
		"actual-version", strconv.FormatInt(current, 10)))
	return status.Error(codes.FailedPrecondition, fmt.Sprintf(
		"Append failed due to WrongExpectedVersion. Stream: %s, Expected version: %d, Actual version: %d", name, expected, current))
}

// deleteExpected reads a Delete or Tombstone request's expected revision.
type deleteOptions interface {
	GetStreamIdentifier() *shared.StreamIdentifier
	GetRevision() uint64
	GetNoStream() *shared.Empty
	GetAny() *shared.Empty
	GetStreamExists() *shared.Empty
}

func deleteExpected(o deleteOptions) (string, int64, error) {
	if o == nil {
		return "", 0, status.Error(codes.InvalidArgument, "delete options are missing")
	}
	name := string(o.GetStreamIdentifier().GetStreamName())
	if name == "" {
		return "", 0, status.Error(codes.InvalidArgument, "stream name is empty")
	}
	switch {
	case o.GetAny() != nil:
		return name, expectAny, nil
	case o.GetNoStream() != nil:
		return name, noStream, nil
	case o.GetStreamExists() != nil:
		return name, expectStreamExists, nil
	}
	if o.GetRevision() > math.MaxInt64-1 {
		return "", 0, status.Error(codes.InvalidArgument, "expected revision out of range")
	}
	return name, int64(o.GetRevision()), nil
}

func (svc *streamsService) del(ctx context.Context, o deleteOptions, hard bool) (uint64, error) {
	name, expected, err := deleteExpected(o)
	if err != nil {
		return 0, err
	}
	res := svc.s.log.delete(name, expected, hard, toTicks(svc.s.now()))
	switch res.decision {
	case decisionStreamDeleted:
		_ = grpc.SetTrailer(ctx, deletedTrailer(name))
		return 0, errStreamDeleted(name)
	case decisionWrongExpectedVersion:
		return 0, wrongExpectedVersionErr(ctx, name, expected, res.current)
	}
	return res.pos, nil
}

// Delete soft-deletes a stream.
func (svc *streamsService) Delete(ctx context.Context, req *streams.DeleteReq) (*streams.DeleteResp, error) {
	pos, err := svc.del(ctx, req.GetOptions(), false)
	if err != nil {
		return nil, err
	}
	return &streams.DeleteResp{PositionOption: &streams.DeleteResp_Position_{Position: &streams.DeleteResp_Position{
		CommitPosition: pos, PreparePosition: pos,
	}}}, nil
}

// Tombstone hard-deletes a stream.
func (svc *streamsService) Tombstone(ctx context.Context, req *streams.TombstoneReq) (*streams.TombstoneResp, error) {
	pos, err := svc.del(ctx, req.GetOptions(), true)
	if err != nil {
		return nil, err
	}
	return &streams.TombstoneResp{PositionOption: &streams.TombstoneResp_Position_{Position: &streams.TombstoneResp_Position{
		CommitPosition: pos, PreparePosition: pos,
	}}}, nil
}
