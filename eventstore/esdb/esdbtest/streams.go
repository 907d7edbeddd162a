package esdbtest

import (
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
)

// The system metadata keys of an event, as EventStoreDB names them.
const (
	metaType        = "type"
	metaContentType = "content-type"
	metaCreated     = "created"
)

type streamsService struct {
	streams.UnimplementedStreamsServer
	s *Server
}

// Append implements the client-streaming append: one options message,
// then one message per proposed event.
func (svc *streamsService) Append(call streams.Streams_AppendServer) error {
	if d := svc.s.appendDelay; d > 0 {
		select {
		case <-time.After(d):
		case <-call.Context().Done():
			return status.FromContextError(call.Context().Err()).Err()
		}
	}
	first, err := call.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "the first append message must carry the options")
	}
	name := string(opts.GetStreamIdentifier().GetStreamName())
	if name == "" {
		return status.Error(codes.InvalidArgument, "stream name is empty")
	}
	var expected int64
	switch o := opts.GetExpectedStreamRevision().(type) {
	case *streams.AppendReq_Options_Any:
		expected = expectAny
	case *streams.AppendReq_Options_NoStream:
		expected = noStream
	case *streams.AppendReq_Options_StreamExists:
		expected = expectStreamExists
	case *streams.AppendReq_Options_Revision:
		// EventStoreDB takes the revision as a signed 64-bit event
		// number; a larger one does not convert.
		if o.Revision > math.MaxInt64 {
			return status.Error(codes.InvalidArgument, "expected revision out of range")
		}
		expected = int64(o.Revision)
	default:
		return status.Error(codes.InvalidArgument, "expected stream revision is missing")
	}

	var (
		events  []proposed
		sizes   = map[uuid.UUID]uint64{}
		total   int
		tooBig  bool
		badMeta error
	)
	for {
		req, err := call.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		msg := req.GetProposedMessage()
		if msg == nil {
			return status.Error(codes.InvalidArgument, "append messages after the first must be proposed events")
		}
		// EventStoreDB adds up the size of the proposed events and
		// refuses the append once the sum passes MaxAppendSize
		// (kurrent-io/KurrentDB#2090). Servers before KurrentDB 25
		// count the data only; later ones also count metadata and type
		// (kurrent-io/KurrentDB#4882). The stand-in counts the whole
		// protobuf message, at least as much as either. It reads the
		// whole request before refusing, so the client always gets the
		// status instead of a broken stream.
		size := proto.Size(msg)
		total += size
		if total > svc.s.maxAppend {
			tooBig = true
			continue
		}
		id, err := fromProtoUUID(msg.GetId())
		if err != nil && badMeta == nil {
			badMeta = status.Error(codes.InvalidArgument, err.Error())
		}
		typ, okType := msg.GetMetadata()[metaType]
		ct, okCT := msg.GetMetadata()[metaContentType]
		switch {
		case badMeta != nil:
		case !okType:
			badMeta = status.Errorf(codes.InvalidArgument, "Required Metadata Property '%s' is missing", metaType)
		case !okCT:
			badMeta = status.Errorf(codes.InvalidArgument, "Required Metadata Property '%s' is missing", metaContentType)
		}
		events = append(events, proposed{id: id, eventType: typ, contentType: ct, data: msg.GetData(), custom: msg.GetCustomMetadata()})
		// A record in the transaction file also carries the stream name
		// and a header; the exact figure does not matter, only that
		// positions grow by more than one per event.
		sizes[id] = uint64(size + len(name) + 64)
	}
	if tooBig {
		// RpcExceptions.MaxAppendSizeExceeded in EventStoreDB.
		call.SetTrailer(metadata.Pairs(
			"exception", "maximum-append-size-exceeded",
			"maximum-append-size", strconv.Itoa(svc.s.maxAppend)))
		return status.Errorf(codes.InvalidArgument, "Maximum Append Size of %d Exceeded.", svc.s.maxAppend)
	}
	if badMeta != nil {
		return badMeta
	}

	res := svc.s.log.append(name, expected, events, toTicks(svc.s.now()), func(p proposed) uint64 { return sizes[p.id] })
	// A timeout comes from the commit of a write; a retry the server
	// recognizes is answered at once.
	if res.decision == decisionWrite && svc.s.takeTimeout() {
		return errCommitTimeout
	}
	if res.decision == decisionStreamDeleted {
		call.SetTrailer(deletedTrailer(name))
		return errStreamDeleted(name)
	}
	if res.decision == decisionWrongExpectedVersion {
		return call.SendAndClose(&streams.AppendResp{Result: &streams.AppendResp_WrongExpectedVersion_{
			WrongExpectedVersion: wrongExpectedVersion(expected, res.current),
		}})
	}
	ok := &streams.AppendResp_Success{}
	switch {
	case res.last != nil:
		ok.CurrentRevisionOption = &streams.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(res.last.number)}
		ok.PositionOption = &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{
			CommitPosition: res.last.pos, PreparePosition: res.last.pos,
		}}
	case res.current >= 0:
		ok.CurrentRevisionOption = &streams.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(res.current)}
		ok.PositionOption = &streams.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	default:
		ok.CurrentRevisionOption = &streams.AppendResp_Success_NoStream{NoStream: &shared.Empty{}}
		ok.PositionOption = &streams.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	}
	return call.SendAndClose(&streams.AppendResp{Result: &streams.AppendResp_Success_{Success: ok}})
}

// wrongExpectedVersion fills both the current fields and the ones older
// clients (20.6.0) read, as EventStoreDB does.
func wrongExpectedVersion(expected, current int64) *streams.AppendResp_WrongExpectedVersion {
	w := &streams.AppendResp_WrongExpectedVersion{}
	if current == noStream {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(current)}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: uint64(current)}
	}
	switch expected {
	case expectAny:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: &shared.Empty{}}
	case expectStreamExists:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: &shared.Empty{}}
	case noStream:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
	default:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: uint64(expected)}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: uint64(expected)}
	}
	return w
}

// Read serves the four kinds of read: a stream or $all, a bounded read or
// a subscription.
func (svc *streamsService) Read(req *streams.ReadReq, call streams.Streams_ReadServer) error {
	svc.s.reads.Add(1)
	o := req.GetOptions()
	if o == nil {
		return status.Error(codes.InvalidArgument, "read options are missing")
	}
	rq := readRequest{
		structured: o.GetUuidOption().GetString_() == nil,
		backwards:  o.GetReadDirection() == streams.ReadReq_Options_Backwards,
		count:      o.GetCount(),
	}
	if f := o.GetFilter(); f != nil {
		m, err := newMatcher(f)
		if err != nil {
			return err
		}
		rq.filter = m
	}
	sub := o.GetSubscription() != nil
	if sub && rq.backwards {
		return status.Error(codes.InvalidArgument, "subscriptions read forwards")
	}
	switch so := o.GetStreamOption().(type) {
	case *streams.ReadReq_Options_Stream:
		name := string(so.Stream.GetStreamIdentifier().GetStreamName())
		if name == "" {
			return status.Error(codes.InvalidArgument, "stream name is empty")
		}
		if sub {
			return svc.subscribeStream(call, rq, name, so.Stream)
		}
		return svc.readStream(call, rq, name, so.Stream)
	case *streams.ReadReq_Options_All:
		if sub {
			return svc.subscribeAll(call, rq, so.All)
		}
		return svc.readAll(call, rq, so.All)
	}
	return status.Error(codes.InvalidArgument, "read options name neither a stream nor $all")
}

type readRequest struct {
	structured bool
	backwards  bool
	count      uint64
	filter     *matcher
}

// readStream reads one stream. A stream with no events, or soft-deleted,
// answers stream_not_found; a tombstoned one fails with stream deleted
// (delete.go); reading from past the end of a stream that exists returns
// no events and no error, as EventStoreDB does.
func (svc *streamsService) readStream(call streams.Streams_ReadServer, rq readRequest, name string, so *streams.ReadReq_Options_StreamOptions) error {
	tombstoned, soft := svc.s.log.deletedState(name)
	if tombstoned {
		call.SetTrailer(deletedTrailer(name))
		return errStreamDeleted(name)
	}
	recs, ok := svc.s.log.streamRecords(name)
	if !ok || soft {
		return call.Send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{StreamNotFound: &streams.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
		}}})
	}
	n := int64(len(recs))
	// Events hidden by the stream's metadata ($tb, $maxCount, $maxAge)
	// are not returned; a stream whose events are all hidden still
	// exists and reads as no events (firstVisible).
	first := svc.s.log.firstVisible(name, toTicks(svc.s.now()))
	sent := uint64(0)
	if !rq.backwards {
		var from int64
		switch r := so.GetRevisionOption().(type) {
		case *streams.ReadReq_Options_StreamOptions_End:
			from = n
		case *streams.ReadReq_Options_StreamOptions_Revision:
			from = clampRevision(r.Revision, n)
		}
		for i := max(from, first); i < n && sent < rq.count; i++ {
			if err := call.Send(svc.streamEventResp(recs[i], rq.structured)); err != nil {
				return err
			}
			sent++
		}
		return nil
	}
	from := n - 1
	switch r := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Start:
		from = 0
	case *streams.ReadReq_Options_StreamOptions_Revision:
		from = min(clampRevision(r.Revision, n), n-1)
	}
	for i := from; i >= first && sent < rq.count; i-- {
		if err := call.Send(svc.streamEventResp(recs[i], rq.structured)); err != nil {
			return err
		}
		sent++
	}
	return nil
}

func clampRevision(r uint64, n int64) int64 {
	if r > uint64(n) {
		return n
	}
	return int64(r)
}

// errInvalidPosition is what EventStoreDB answers to a $all read or
// subscription that starts inside a record (RpcExceptions.InvalidPositionException):
// gRPC InvalidArgument in EventStoreDB 24.x and KurrentDB, as the stand-in
// answers; 23.10 answered Unknown (kurrent-io/KurrentDB#3963).
var errInvalidPosition = status.Error(codes.InvalidArgument, "Trying to read from an invalid position.")

// checkPosition refuses a $all start position as EventStoreDB does: the
// server first builds its Position struct from the request, whose
// constructor throws when the prepare position is above the commit
// position (an exception gRPC reports as Unknown); then it refuses a
// commit position inside a record.
func checkPosition(all []*record, end uint64, p tfPos) error {
	if p.prepare > p.commit {
		return status.Error(codes.Unknown, "The commit position cannot be less than the prepare position")
	}
	if !validPosition(all, end, p) {
		return errInvalidPosition
	}
	return nil
}

// readAll reads $all in commit/prepare order. Forwards, the start position
// is inclusive; backwards, it is exclusive (EventStoreDB reads backwards
// from a post-position, the end of a record).
func (svc *streamsService) readAll(call streams.Streams_ReadServer, rq readRequest, ao *streams.ReadReq_Options_AllOptions) error {
	all, _ := svc.s.log.snapshot()
	end := svc.s.log.endPosition()
	sent := uint64(0)
	send := func(r *record) error {
		if rq.filter != nil && !rq.filter.match(r) {
			return nil
		}
		sent++
		return call.Send(eventResp(r, rq.structured))
	}
	if !rq.backwards {
		i := 0
		switch p := ao.GetAllOption().(type) {
		case *streams.ReadReq_Options_AllOptions_End:
			i = len(all)
		case *streams.ReadReq_Options_AllOptions_Position:
			pos := tfPos{p.Position.GetCommitPosition(), p.Position.GetPreparePosition()}
			if err := checkPosition(all, end, pos); err != nil {
				return err
			}
			i = firstAtOrAfter(all, pos)
		}
		for ; i < len(all) && sent < rq.count; i++ {
			if err := send(all[i]); err != nil {
				return err
			}
		}
		return nil
	}
	i := len(all) - 1
	switch p := ao.GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_Start:
		i = -1
	case *streams.ReadReq_Options_AllOptions_Position:
		pos := tfPos{p.Position.GetCommitPosition(), p.Position.GetPreparePosition()}
		if err := checkPosition(all, end, pos); err != nil {
			return err
		}
		i = firstAtOrAfter(all, pos) - 1
	}
	for ; i >= 0 && sent < rq.count; i-- {
		if err := send(all[i]); err != nil {
			return err
		}
	}
	return nil
}

// subscribeAll is a catch-up subscription to $all: the events after the
// start position (exclusive: "the positions provided to the subscriptions
// are exclusive", docs.kurrent.io/clients/grpc/subscriptions), then each
// new event as it is appended.
//
// As EventStoreDB does since its subscriptions stopped using the read
// index (kurrent-io/KurrentDB#4057, #4128, #4131: Enumerator.AllSubscription
// and AllSubscriptionFiltered, MainLoop), the subscription is confirmed
// first and only then reads from the start position: a position inside a
// record fails the call after the confirmation, with "Trying to read from
// an invalid position". A prepare position above the commit position is
// refused before, when the request is parsed. Every event, caught up or
// live, is sent only if its position is after the start position, so a
// start position beyond the end of the log skips the events written up
// to it (GoLive: "the client specified a checkpoint for events that don't
// exist yet and so is not interested in them").
func (svc *streamsService) subscribeAll(call streams.Streams_ReadServer, rq readRequest, ao *streams.ReadReq_Options_AllOptions) error {
	var (
		start func() (int, error)
		keep  = func(*record) bool { return true }
	)
	switch p := ao.GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_End:
		all, _ := svc.s.log.snapshot()
		start = func() (int, error) { return len(all), nil }
	case *streams.ReadReq_Options_AllOptions_Position:
		pos := tfPos{p.Position.GetCommitPosition(), p.Position.GetPreparePosition()}
		if pos.prepare > pos.commit {
			return checkPosition(nil, 0, pos)
		}
		start = func() (int, error) {
			all, _ := svc.s.log.snapshot()
			if err := checkPosition(all, svc.s.log.endPosition(), pos); err != nil {
				return 0, err
			}
			return firstAfter(all, pos), nil
		}
		keep = func(r *record) bool { return pos.less(r.tfPos()) }
	default:
		start = func() (int, error) { return 0, nil }
	}
	return svc.follow(call, rq, start, keep)
}

// subscribeStream is a catch-up subscription to one stream, which need not
// exist yet. The start revision is exclusive.
func (svc *streamsService) subscribeStream(call streams.Streams_ReadServer, rq readRequest, name string, so *streams.ReadReq_Options_StreamOptions) error {
	all, _ := svc.s.log.snapshot()
	start, after := 0, int64(-1)
	switch r := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_End:
		start = len(all)
	case *streams.ReadReq_Options_StreamOptions_Revision:
		after = int64(min(r.Revision, 1<<62))
	}
	rq.filter = nil // filters apply to $all only
	// The catch-up read of a tombstoned stream fails the subscription,
	// after its confirmation, with stream deleted
	// (Enumerators.StreamSubscription: ReadStreamResult.StreamDeleted).
	// The tombstone record itself is not delivered.
	begin := func() (int, error) {
		if tombstoned, _ := svc.s.log.deletedState(name); tombstoned {
			call.SetTrailer(deletedTrailer(name))
			return 0, errStreamDeleted(name)
		}
		return start, nil
	}
	return svc.follow(call, rq, begin, func(r *record) bool { return r.stream == name && r.number > after && r.number != deletedStream })
}

// follow confirms the subscription, then sends every record of $all from
// the index start returns on that keep accepts (and the filter matches),
// waiting for new ones once it has caught up. An error from start ends the
// call after the confirmation. A filtered subscription also gets
// checkpoints, every maxSearchWindow × checkpointIntervalMultiplier events
// considered, as EventStoreDB sends them.
func (svc *streamsService) follow(call streams.Streams_ReadServer, rq readRequest, start func() (int, error), keep func(*record) bool) error {
	ctx := call.Context()
	drop := svc.s.dropSignal()
	dropped := func() error {
		if drop.reason.trailer != nil {
			call.SetTrailer(drop.reason.trailer)
		}
		return drop.reason.err
	}
	if err := call.Send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{Confirmation: &streams.ReadResp_SubscriptionConfirmation{
		SubscriptionId: uuid.NewString(),
	}}}); err != nil {
		return err
	}
	i, err := start()
	if err != nil {
		return err
	}
	considered, caughtUp := uint64(0), false
	for {
		all, changed := svc.s.log.snapshot()
		if i >= len(all) {
			if !caughtUp {
				caughtUp = true
				if err := call.Send(&streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: &streams.ReadResp_CaughtUp{}}}); err != nil {
					return err
				}
			}
			select {
			case <-changed:
				continue
			case <-drop.done:
				return dropped()
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		for ; i < len(all); i++ {
			select {
			case <-drop.done:
				return dropped()
			default:
			}
			r := all[i]
			if !keep(r) {
				continue
			}
			if rq.filter != nil {
				considered++
				if considered%rq.filter.checkpointEvery == 0 {
					if err := call.Send(&streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{Checkpoint: &streams.ReadResp_Checkpoint{
						CommitPosition: r.pos, PreparePosition: r.pos,
					}}}); err != nil {
						return err
					}
				}
				if !rq.filter.match(r) {
					continue
				}
			}
			if err := call.Send(eventResp(r, rq.structured)); err != nil {
				return err
			}
		}
	}
}

// streamEventResp is an event as a stream read answers it: before 22.6.0
// without its $all position (Position.FromInt64(-1, -1) on the server:
// both halves 2^64-1, and no_position).
func (svc *streamsService) streamEventResp(r *record, structured bool) *streams.ReadResp {
	resp := eventResp(r, structured)
	if !svc.s.streamPositions {
		ev := resp.GetEvent()
		ev.Event.CommitPosition, ev.Event.PreparePosition = math.MaxUint64, math.MaxUint64
		ev.Position = &streams.ReadResp_ReadEvent_NoPosition{NoPosition: &shared.Empty{}}
	}
	return resp
}

func eventResp(r *record, structured bool) *streams.ReadResp {
	return &streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
		Event: &streams.ReadResp_ReadEvent_RecordedEvent{
			Id:               protoUUID(r.id, structured),
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
			StreamRevision:   uint64(r.number),
			PreparePosition:  r.pos,
			CommitPosition:   r.pos,
			Metadata: map[string]string{
				metaType:        r.eventType,
				metaContentType: r.contentType,
				metaCreated:     strconv.FormatInt(r.created, 10),
			},
			CustomMetadata: r.custom,
			Data:           r.data,
		},
		Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.pos},
	}}}
}

// matcher is a server-side filter: on the event type or on the stream
// name, by regular expression or by prefixes (one of the two).
type matcher struct {
	onType          bool
	re              *regexp.Regexp
	prefixes        []string
	checkpointEvery uint64
}

func newMatcher(f *streams.ReadReq_Options_FilterOptions) (*matcher, error) {
	m := &matcher{}
	var expr *streams.ReadReq_Options_FilterOptions_Expression
	switch x := f.GetFilter().(type) {
	case *streams.ReadReq_Options_FilterOptions_EventType:
		m.onType, expr = true, x.EventType
	case *streams.ReadReq_Options_FilterOptions_StreamIdentifier:
		expr = x.StreamIdentifier
	default:
		return nil, status.Error(codes.InvalidArgument, "filter names neither event type nor stream")
	}
	// EventStoreDB evaluates .NET regular expressions; Go's RE2 syntax
	// agrees with it on what the backend sends (anchors, alternation,
	// escaped dots, character classes).
	if expr.GetRegex() != "" {
		re, err := regexp.Compile(expr.GetRegex())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, fmt.Sprintf("filter regex: %v", err))
		}
		m.re = re
	}
	m.prefixes = expr.GetPrefix()
	window := uint64(f.GetMax())
	if window == 0 {
		window = 32 // the clients' default MaxSearchWindow
	}
	m.checkpointEvery = window * max(uint64(f.GetCheckpointIntervalMultiplier()), 1)
	return m, nil
}

func (m *matcher) match(r *record) bool {
	s := r.stream
	if m.onType {
		s = r.eventType
	}
	if m.re != nil {
		return m.re.MatchString(s)
	}
	for _, p := range m.prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return len(m.prefixes) == 0
}
