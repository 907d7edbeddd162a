package esdbtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/gossip"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
)

// DefaultMaxAppendSize is EventStoreDB's default MaxAppendSize: the most
// bytes of proposed events (as protobuf messages) one append may carry.
const DefaultMaxAppendSize = 1 << 20

// Version is the server version the stand-in reports. It is not the
// version of any EventStoreDB release, on purpose.
const Version = "0.0.0"

// ServerVersion makes the stand-in report version v ("major.minor.patch")
// instead of Version, and behave as that version does where the stand-in
// models a difference: before 22.6.0, stream reads carry no $all position
// (commit and prepare are both 2^64-1, EventStoreDB's "no position";
// kurrent-io/KurrentDB#3459 added them in 22.6.0).
func ServerVersion(v string) Option { return func(c *config) { c.version = v } }

// Option adjusts a Server.
type Option func(*config)

type config struct {
	version       string
	addr          string
	maxAppendSize int
	now           func() time.Time
	appendDelay   time.Duration
}

// Addr sets the TCP address to listen on (default 127.0.0.1:0, a free
// port on the loopback interface).
func Addr(addr string) Option { return func(c *config) { c.addr = addr } }

// MaxAppendSize sets the append size limit, as EventStoreDB's
// --max-append-size does (default DefaultMaxAppendSize).
func MaxAppendSize(n int) Option { return func(c *config) { c.maxAppendSize = n } }

// AppendDelay makes the stand-in wait d before it takes an append (or
// until the call ends): a node slow to answer, for tests of deadlines.
func AppendDelay(d time.Duration) Option { return func(c *config) { c.appendDelay = d } }

// Server is a running stand-in.
type Server struct {
	log         *memLog
	grpc        *grpc.Server
	lis         net.Listener
	maxAppend   int
	appendDelay time.Duration
	now         func() time.Time
	version     string
	// streamPositions: stream reads carry each event's $all position
	// (servers from 22.6.0 on).
	streamPositions bool
	id              uuid.UUID
	served          chan struct{}
	stopOnce        sync.Once

	dropMu sync.Mutex
	drop   *dropSignal // fired by DropSubscriptions, then replaced

	timeouts atomic.Int64 // appends still to answer with a commit timeout

	reads atomic.Int64 // Read calls received (reads and subscriptions)
}

// Reads is how many Read calls the server has received: each stream or
// $all read, and each subscription. Tests use it to count round trips.
func (s *Server) Reads() int64 { return s.reads.Load() }

// Clock makes the stand-in take the time from now instead of time.Now: for
// the events' "created" timestamps and for $maxAge.
func Clock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Start starts a stand-in server that keeps running until Stop is called or
// ctx ends. Connect to it with URL().
func Start(ctx context.Context, opts ...Option) (*Server, error) {
	c := config{version: Version, addr: "127.0.0.1:0", maxAppendSize: DefaultMaxAppendSize, now: time.Now}
	for _, o := range opts {
		o(&c)
	}
	if c.maxAppendSize <= 0 {
		return nil, fmt.Errorf("esdbtest: max append size %d: want > 0", c.maxAppendSize)
	}
	var major, minor, patch int
	if _, err := fmt.Sscanf(c.version, "%d.%d.%d", &major, &minor, &patch); err != nil {
		return nil, fmt.Errorf("esdbtest: server version %q: want major.minor.patch", c.version)
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("esdbtest: listen on %s: %w", c.addr, err)
	}
	s := &Server{
		log:         newMemLog(),
		lis:         lis,
		maxAppend:   c.maxAppendSize,
		appendDelay: c.appendDelay,
		now:         c.now,
		version:     c.version,
		// The stand-in's own version (0.0.0) behaves as the current
		// servers do.
		streamPositions: major == 0 || major > 22 || (major == 22 && minor >= 6),
		id:              uuid.New(),
		served:          make(chan struct{}),
		drop:            newDropSignal(),
	}
	s.grpc = grpc.NewServer(
		// The client pings every 10 s, even without calls in flight; the
		// gRPC default policy would answer that with GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		// An append's events arrive one message each; a read answers one
		// event per message. The largest event fits in EventStoreDB's own
		// limit, which this mirrors.
		grpc.MaxRecvMsgSize(17<<20),
	)
	streams.RegisterStreamsServer(s.grpc, &streamsService{s: s})
	serverfeatures.RegisterServerFeaturesServer(s.grpc, &featuresService{version: c.version})
	gossip.RegisterGossipServer(s.grpc, &gossipService{s: s})
	go func() {
		defer close(s.served)
		_ = s.grpc.Serve(lis)
	}()
	context.AfterFunc(ctx, s.Stop)
	return s, nil
}

// URL is the connection string for the client: esdb://host:port?tls=false.
func (s *Server) URL() string { return "esdb://" + s.lis.Addr().String() + "?tls=false" }

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Stop closes every connection and call and stops the server. It is safe to
// call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.grpc.Stop()
		<-s.served
	})
}

// DropSubscriptions ends every subscription call in progress with the gRPC
// status Unavailable, while the server keeps serving: what a client sees
// when the node it subscribed on shuts its subscriptions down (a restart,
// a leader election, a node going offline behind a load balancer). The
// connection stays up, so a client may subscribe again at once.
func (s *Server) DropSubscriptions() { s.dropWith(errDropped) }

// DropSubscriptionsNotLeader ends every subscription call in progress as
// EventStoreDB ends a subscription on a node that stopped being the leader
// while the subscription asked for the leader (the client's default
// nodePreference): the subscription's read is "not handled", which the
// server answers with RpcExceptions.LeaderInfo, the gRPC status NotFound
// "Leader info available" with the new leader's address in the trailers
// (exception not-leader). The stand-in names itself as the leader, so a
// client may subscribe again at once.
func (s *Server) DropSubscriptionsNotLeader() {
	host, port, _ := net.SplitHostPort(s.Addr())
	s.dropWith(&dropReason{
		err: status.Error(codes.NotFound, "Leader info available"),
		trailer: metadata.Pairs("exception", "not-leader",
			"leader-endpoint-host", host, "leader-endpoint-port", port),
	})
}

// TimeOutAppends makes the next n appends end as EventStoreDB ends an
// append whose commit the cluster did not acknowledge in time (a leader
// election, a node lost, a quorum too slow): OperationResult.CommitTimeout,
// which the server answers with RpcExceptions.Timeout, the gRPC status
// Aborted "Operation timed out" (Streams.Append). The events are written
// all the same, one of the two outcomes a real cluster may have (the
// other: the leader loses them in the election), so that a retry meets
// the ids it already holds.
func (s *Server) TimeOutAppends(n int) { s.timeouts.Add(int64(n)) }

// takeTimeout reports whether this append is one TimeOutAppends asked for.
func (s *Server) takeTimeout() bool {
	for {
		n := s.timeouts.Load()
		if n <= 0 {
			return false
		}
		if s.timeouts.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// errCommitTimeout is RpcExceptions.Timeout as EventStoreDB answers an
// append's CommitTimeout.
var errCommitTimeout = status.Error(codes.Aborted, "Operation timed out: CommitTimeout")

// dropReason is how a subscription dropped by the server ends: its status
// and the trailers sent with it.
type dropReason struct {
	err     error
	trailer metadata.MD
}

// dropSignal is one drop: done is closed once reason is set.
type dropSignal struct {
	done   chan struct{}
	reason *dropReason
}

func newDropSignal() *dropSignal { return &dropSignal{done: make(chan struct{})} }

func (s *Server) dropWith(r *dropReason) {
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	s.drop.reason = r
	close(s.drop.done)
	s.drop = newDropSignal()
}

func (s *Server) dropSignal() *dropSignal {
	s.dropMu.Lock()
	defer s.dropMu.Unlock()
	return s.drop
}

// errDropped is what a subscription dropped by DropSubscriptions ends with.
var errDropped = &dropReason{err: status.Error(codes.Unavailable, "subscription dropped by the server")}

// featuresService answers the client's connect-time question: which
// methods does this node serve. The client asks it on every (re)connect.
type featuresService struct {
	serverfeatures.UnimplementedServerFeaturesServer
	version string
}

func (f *featuresService) GetSupportedMethods(context.Context, *shared.Empty) (*serverfeatures.SupportedMethods, error) {
	const svc = "event_store.client.streams.streams"
	return &serverfeatures.SupportedMethods{
		EventStoreServerVersion: f.version,
		Methods: []*serverfeatures.SupportedMethod{
			{ServiceName: svc, MethodName: "read"},
			{ServiceName: svc, MethodName: "append"},
			{ServiceName: svc, MethodName: "delete"},
			{ServiceName: svc, MethodName: "tombstone"},
			{ServiceName: "event_store.client.gossip.gossip", MethodName: "read"},
			{ServiceName: "event_store.client.server_features.serverfeatures", MethodName: "getsupportedmethods"},
		},
	}, nil
}

// gossipService answers the client's cluster discovery: one live node,
// the leader, at the address the client reached.
type gossipService struct {
	gossip.UnimplementedGossipServer
	s *Server
}

func (g *gossipService) Read(context.Context, *shared.Empty) (*gossip.ClusterInfo, error) {
	host, portText, err := net.SplitHostPort(g.s.Addr())
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 32)
	if err != nil {
		return nil, err
	}
	return &gossip.ClusterInfo{Members: []*gossip.MemberInfo{{
		InstanceId:   protoUUID(g.s.id, true),
		TimeStamp:    toTicks(g.s.now()),
		State:        gossip.MemberInfo_Leader,
		IsAlive:      true,
		HttpEndPoint: &gossip.EndPoint{Address: host, Port: uint32(port)},
	}}}, nil
}

// toTicks converts t to what EventStoreDB puts in an event's "created"
// metadata: .NET ticks (100 ns) since the Unix epoch, which the client
// turns back with time.Unix(0, ticks*100).
func toTicks(t time.Time) int64 { return t.UnixNano() / 100 }

func protoUUID(id uuid.UUID, structured bool) *shared.UUID {
	if !structured {
		return &shared.UUID{Value: &shared.UUID_String_{String_: id.String()}}
	}
	var most, least uint64
	for i := range 8 {
		most = most<<8 | uint64(id[i])
		least = least<<8 | uint64(id[8+i])
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits:  int64(most),
		LeastSignificantBits: int64(least),
	}}}
}

var errBadUUID = errors.New("event id is neither a structured nor a string UUID")

func fromProtoUUID(u *shared.UUID) (uuid.UUID, error) {
	if s := u.GetStructured(); s != nil {
		var id uuid.UUID
		most, least := uint64(s.GetMostSignificantBits()), uint64(s.GetLeastSignificantBits())
		for i := 7; i >= 0; i-- {
			id[i] = byte(most)
			id[8+i] = byte(least)
			most >>= 8
			least >>= 8
		}
		return id, nil
	}
	if str := u.GetString_(); str != "" {
		return uuid.Parse(str)
	}
	return uuid.Nil, errBadUUID
}
