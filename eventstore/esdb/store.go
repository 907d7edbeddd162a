package esdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
)

// DefaultMaxAppendSize is EventStoreDB's default MaxAppendSize (1 MiB): the
// most bytes of events, as the server counts them, that one append may
// carry.
const DefaultMaxAppendSize = 1 << 20

// Option adjusts a Store.
type Option func(*options)

type options struct {
	namespace     string
	maxAppendSize int
	logger        *slog.Logger
}

// WithNamespace keeps the store inside a part of a shared server: every
// stream id is stored with prefix in front of it, and ReadAll, Subscribe
// and Head see only the streams that carry it. Two stores with different
// namespaces on one server do not see each other's events. The tests use
// it to run on a shared EventStoreDB; it also separates environments that
// share a cluster. No namespace may be a prefix of another on one server:
// the stored name cannot tell stream "eu-s" of namespace "prod-" from
// stream "s" of "prod-eu-", so the first store would read (and could
// write) the second's streams.
func WithNamespace(prefix string) Option { return func(o *options) { o.namespace = prefix } }

// WithMaxAppendSize sets the largest append the backend sends, in bytes as
// EventStoreDB counts them (the protobuf size of the proposed events). Set
// it to the server's MaxAppendSize; the default is EventStoreDB's default,
// DefaultMaxAppendSize. Larger appends are refused with a validation error
// whose rule is "append-size", before anything is sent.
func WithMaxAppendSize(n int) Option { return func(o *options) { o.maxAppendSize = n } }

// WithLogger receives the client's own log lines, at debug level (the
// store returns every error that matters to its caller).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Store is an eventstore.Store on EventStoreDB. It is safe for concurrent
// use.
type Store struct {
	// client is the client the calls use now (under mu: see renewOn);
	// cfg makes its successors.
	client    *conn
	cfg       *client.Configuration
	validator *eventstore.Validator
	ns        string
	maxAppend int
	// ownDeadline: the connection string sets defaultDeadline, which then
	// bounds each append; else the caller's context does (see Append).
	ownDeadline bool

	// life ends when the store is closed; every call runs under it.
	life context.Context
	kill context.CancelFunc

	mu     sync.Mutex
	closed bool
	// renewing: a renewal of client runs (see renewOn).
	renewing bool
	ops      sync.WaitGroup
	subs     map[*subscription]struct{}
}

var (
	_ eventstore.Store         = (*Store)(nil)
	_ eventstore.WriteReporter = (*Store)(nil)
)

// New connects to the EventStoreDB node or cluster named by connection (an
// esdb:// or esdb+discover:// connection string, as the client parses it)
// and returns a store that validates every append against reg. It fails if
// no node answers before ctx ends.
func New(ctx context.Context, connection string, reg *schemas.Registry, opts ...Option) (*Store, error) {
	v, err := eventstore.NewValidator(reg)
	if err != nil {
		return nil, err
	}
	o := options{maxAppendSize: DefaultMaxAppendSize, logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxAppendSize <= 0 {
		return nil, fmt.Errorf("esdb: max append size %d: want > 0", o.maxAppendSize)
	}
	if strings.HasPrefix(o.namespace, "$") {
		return nil, fmt.Errorf("esdb: namespace %q: stream names starting with $ are EventStoreDB's system streams", o.namespace)
	}
	cfg, err := client.ParseConnectionString(connection)
	if err != nil {
		// The client's error may quote the connection string, password
		// included.
		return nil, fmt.Errorf("esdb: connection string %s: %s", Redact(connection), strings.ReplaceAll(err.Error(), connection, Redact(connection)))
	}
	if cfg.NodePreference != client.NodePreferenceLeader {
		// On a follower, the read-back that gives an append its positions,
		// and the reads an aggregate loads from, could be behind the
		// leader: a landed append would report a failed read-back, and a
		// load would miss events just appended.
		return nil, fmt.Errorf("esdb: connection string %s: nodePreference=%s is not supported: the store reads back its own appends and needs the leader's view (leave nodePreference out: the default is leader)",
			Redact(connection), strings.ToLower(string(cfg.NodePreference)))
	}
	log := o.logger
	cfg.Logger = func(level client.LogLevel, format string, args ...any) {
		log.Debug(fmt.Sprintf(format, args...), "component", "esdb-client", "client_level", level)
	}
	c, err := client.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("esdb: %w", err)
	}
	// The client connects on first use; connect now so that a wrong
	// address fails here, not on the first append. A probe left behind
	// when ctx ends closes the client once the client answers it.
	cn := newConn(c)
	version, err := call(ctx, nil, cn, (*client.Client).GetServerVersion, nil)
	if err != nil {
		cn.retire()
		err = fmt.Errorf("esdb: connect to %s: %w", Redact(connection), err)
		if ctx.Err() == nil {
			err = unavailable(err)
		}
		return nil, err
	}
	if err := checkVersion(version); err != nil {
		cn.retire()
		return nil, fmt.Errorf("esdb: %s: %w", Redact(connection), err)
	}
	life, kill := context.WithCancel(context.Background())
	return &Store{
		client:      cn,
		cfg:         cfg,
		validator:   v,
		ns:          o.namespace,
		maxAppend:   o.maxAppendSize,
		ownDeadline: cfg.DefaultDeadline != nil,
		life:        life,
		kill:        kill,
		subs:        map[*subscription]struct{}{},
	}, nil
}

// checkVersion refuses servers before 22.6.0. They send no $all position
// with a stream read (kurrent-io/KurrentDB#3459 added it), and an append
// takes its events' positions from reading them back, so every append
// result would carry a position no event has. A server without the
// server-features call (before 20.10) reports 0.0.0, as the protocol
// stand-in does: it cannot be told apart and is let through.
func checkVersion(v *client.ServerVersion) error {
	if v == nil || v.Major == 0 || v.Major > 22 || (v.Major == 22 && v.Minor >= 6) {
		return nil
	}
	return fmt.Errorf("EventStoreDB %d.%d.%d is not supported: eventstream needs 22.6 or later, whose stream reads carry each event's $all position", v.Major, v.Minor, v.Patch)
}

// Redact returns the connection string with its password replaced, for
// logs and errors.
func Redact(connection string) string {
	u, err := url.Parse(connection)
	if err != nil || u.User == nil {
		if i := strings.Index(connection, "@"); i >= 0 {
			if j := strings.Index(connection, "://"); j >= 0 && j < i {
				return connection[:j+3] + "xxxxx" + connection[i:]
			}
		}
		return connection
	}
	return u.Redacted()
}

// Features: positions are EventStoreDB's, not consecutive; Types and
// TenantID of ReadAll filter in the client; the data lives on the server;
// ids are unique per stream, as EventStoreDB checks them.
func (s *Store) Features() eventstore.Features {
	return eventstore.Features{GaplessPositions: false, TenantFilter: false, Persistent: true, PerStreamIDs: true}
}

// Close ends every subscription and waits for the calls in flight, which
// end at once with ErrClosed. It does not wait for the client: a call's
// goroutine still inside it leaves once the client answers it (see call),
// and the client is closed once none is left. Later calls fail with
// ErrClosed. A renewal in flight (see renewOn) is not waited for either:
// it closes its client once its probe ends.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := make([]*subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	s.kill()
	for _, sub := range subs {
		sub.shutdown(eventstore.ErrClosed)
	}
	for _, sub := range subs {
		sub.wait()
	}
	s.ops.Wait()
	s.conn().retire()
	return nil
}

// conn returns the client for a call.
func (s *Store) conn() *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client
}

// renewOn starts replacing cn when err, from a call on it, says that its
// client has closed itself for good (see clientGone). The EventStoreDB
// client closes itself when a discovery fails (no node answered within its
// maxDiscoverAttempts): every later call on it fails at once with
// "connection is closed", the cluster back or not, so without a new client
// the store would stay unavailable until reopened. cn is marked dead: the
// calls still waiting in it give up (ErrUnavailable), as the client will
// never answer those that asked it for its connection during the
// discovery.
//
// One renewal runs at a time, in the background, and publishes its client
// only once that client has connected: the renewal's probe is then its
// client's only caller, so a failed probe strands nothing, where a client
// handed to the calls before it connects would strand, on each failed
// discovery through the outage, a goroutine per concurrent caller.
// Meanwhile the calls fail at once on cn (ErrUnavailable), and the next of
// them, once a probe has failed, starts another.
func (s *Store) renewOn(cn *conn, err error) {
	if !clientGone(err) {
		return
	}
	cn.markDead()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.client != cn || s.renewing {
		return // closed by Close, renewed already, or being renewed
	}
	s.renewing = true
	go s.renew()
}

// renew makes a new client, connects it and, if it connected and the
// store is still open, makes it the client the calls use. The old one is
// retired: closed once no call is left inside it, which for a call
// stranded by its failed discovery is never (see conn.retire).
func (s *Store) renew() {
	nc, err := client.NewClient(s.cfg)
	var cn *conn
	if err == nil {
		cn = newConn(nc)
		// Once the store is closed, the probe is not waited for: it
		// closes nc when the client answers it.
		_, err = call(s.life, nil, cn, (*client.Client).GetServerVersion, nil)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renewing = false
	switch {
	case cn == nil:
		// The configuration made the first client: not expected.
	case err != nil || s.closed:
		cn.retire()
	default:
		old := s.client
		s.client = cn
		old.retire()
	}
}

// begin registers a call: it fails once the store is closed, and the
// returned context also ends when the store is closed.
func (s *Store) begin(ctx context.Context) (context.Context, func(), error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, nil, eventstore.ErrClosed
	}
	s.ops.Add(1)
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.life, cancel)
	return ctx, func() {
		stop()
		cancel()
		s.ops.Done()
	}, nil
}

// fail says what went wrong in a call made under parent: the store was
// closed, the caller's context ended, or err. The caller's deadline counts
// as ended once it has passed, even if parent's own timer has not fired
// yet: the client's timer for the same deadline may fire first, and its
// DeadlineExceeded is then the caller's, not an outage.
func (s *Store) fail(parent context.Context, what string, err error) error {
	switch {
	case s.life.Err() != nil:
		return fmt.Errorf("esdb: %s: %w", what, eventstore.ErrClosed)
	case parent.Err() != nil:
		return fmt.Errorf("esdb: %s: %w", what, parent.Err())
	}
	if d, ok := parent.Deadline(); ok && !time.Now().Before(d) {
		return fmt.Errorf("esdb: %s: %w", what, context.DeadlineExceeded)
	}
	return unavailable(fmt.Errorf("esdb: %s: %w", what, err))
}

// unavailable is err in an *eventstore.UnavailableError when it says that
// the cluster could not be reached or could not finish the call: no node
// answers (gRPC Unavailable, also what discovery gives up with, and the
// server's "not ready" and "too busy"), the connection was closed under
// the call, the client closed itself under the call (errClientGone), the
// node is no longer the leader or knows of none (an election
// is on), the server timed the operation out (Aborted: an append whose
// commit the cluster did not acknowledge in time, which may have been
// written), or the node did not answer within the client's own deadline
// (the caller's ended deadline is told apart before: see fail). Else err
// as it is.
func unavailable(err error) error {
	var e *client.Error
	if errors.As(err, &e) {
		switch e.Code() {
		case client.ErrorUnavailable, client.ErrorCodeConnectionClosed, client.ErrorCodeNotLeader, client.ErrorCodeDeadlineExceeded, client.ErrorAborted:
			return &eventstore.UnavailableError{Err: err}
		}
	}
	if errors.Is(err, errClientGone) {
		return &eventstore.UnavailableError{Err: err}
	}
	// A subscription's stream reports its drop as the bare gRPC status,
	// without the trailers the client reads "not leader" from.
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted:
		return &eventstore.UnavailableError{Err: err}
	}
	if noLeader(err) {
		return &eventstore.UnavailableError{Err: err}
	}
	return err
}

// noLeader reports whether err is EventStoreDB's answer from a node that
// is not the leader (RpcExceptions.LeaderInfo: NotFound "Leader info
// available") or knows of no leader (NoLeaderInfo: Unknown "No leader info
// available in response"), as the bare status: the client turns the first
// into ErrorCodeNotLeader only for calls it reads the trailers of, which
// excludes a subscription's drop.
func noLeader(err error) bool {
	// status.FromError of a wrapped status gives the wrapper's text as
	// the message: take the status itself.
	var g interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &g) {
		return false
	}
	st := g.GRPCStatus()
	switch st.Code() {
	case codes.NotFound:
		return st.Message() == "Leader info available"
	case codes.Unknown:
		return st.Message() == "No leader info available in response"
	}
	return false
}

// streamName is the EventStoreDB stream of an eventstream stream id.
func (s *Store) streamName(stream string) string { return s.ns + stream }

// checkStream refuses stream ids EventStoreDB would treat as its own:
// names starting with $ are system streams ($$ the metadata of a stream).
func (s *Store) checkStream(stream string) error {
	if err := eventstore.CheckStreamID(stream); err != nil {
		return err
	}
	if strings.HasPrefix(s.streamName(stream), "$") {
		return &eventstore.ValidationError{Index: -1, Pointer: "/stream", Rule: "stream-id",
			Message: "stream ids starting with $ are reserved for EventStoreDB's system streams"}
	}
	return nil
}

var errNotFound = errors.New("stream not found")
