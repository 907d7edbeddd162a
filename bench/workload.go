package bench

import (
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/brainhq/eventstream/eventstore"
)

// workload turns an append's sequence number into the events of that
// append. The same sequence number gives the same events (ids included)
// in our phase and in the raw phase, so both write the same rows.
type workload struct {
	seed     uint64
	perApp   int
	streams  int // 0: a new stream per append
	prefix   string
	payloads *payloadPool
	tenants  []string
	random   bool // version 4 event ids instead of time-ordered ones
}

// idEpoch is the timestamp of the first append's time-ordered event ids;
// each later append's ids are one millisecond later. It is fixed, so that
// a seed gives the same ids in every run (each run has a schema of its
// own, so runs never meet each other's ids).
var idEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

func newWorkload(cfg Config, prefix string, payloads *payloadPool) *workload {
	tenants := make([]string, 8)
	for i := range tenants {
		tenants[i] = "tenant-" + strconv.Itoa(i+1)
	}
	return &workload{seed: uint64(cfg.Seed), perApp: cfg.EventsPerAppend, streams: cfg.Streams, prefix: prefix,
		payloads: payloads, tenants: tenants, random: cfg.RandomIDs}
}

// batch is one append: its stream and events, with each event's meta as
// stored (for the raw phase, which writes it without our encoder).
type batch struct {
	seq    int64
	stream string
	// streamIdx is the shared stream's index (0 when each append has a
	// stream of its own).
	streamIdx int
	events    []eventstore.Event
	metas     [][]byte
}

const producer = "eventstream-bench"

func (w *workload) batch(seq int64) batch {
	r := rand.New(rand.NewPCG(w.seed, uint64(seq)))
	b := batch{seq: seq, events: make([]eventstore.Event, w.perApp), metas: make([][]byte, w.perApp)}
	if w.streams > 0 {
		b.streamIdx = r.IntN(w.streams)
		b.stream = w.prefix + "-" + strconv.Itoa(b.streamIdx)
	} else {
		b.stream = w.prefix + "-" + strconv.FormatInt(seq, 10)
	}
	tenant := w.tenants[r.IntN(len(w.tenants))]
	corr := randomUUID(r).String()
	var causation string
	for i := range b.events {
		s := w.payloads.pick(r)
		// Exactly one id draw either way, so that RandomIDs changes the
		// ids and nothing else: the later picks see the same numbers.
		var id uuid.UUID
		if w.random {
			id = randomUUID(r)
		} else {
			id = orderedUUID(r, idEpoch+seq)
		}
		e := eventstore.Event{
			ID: id, Type: s.gen.typ, Source: s.gen.source, Payload: s.payload,
			Meta: eventstore.Meta{SchemaVersion: s.gen.version, Producer: producer, TenantID: tenant, CorrelationID: corr, CausationID: causation},
		}
		b.events[i] = e
		b.metas[i] = metaJSON(e.Meta)
		causation = e.ID.String()
	}
	return b
}

// metaJSON encodes meta as the store does (named keys only; the bench sets
// no free-form keys). Values are ids and names without characters that
// need escaping.
func metaJSON(m eventstore.Meta) []byte {
	b := make([]byte, 0, 160)
	b = append(b, `{"schema_version":`...)
	b = strconv.AppendInt(b, int64(m.SchemaVersion), 10)
	b = append(b, `,"tenant_id":"`...)
	b = append(b, m.TenantID...)
	b = append(b, `","producer":"`...)
	b = append(b, m.Producer...)
	b = append(b, '"')
	if m.CorrelationID != "" {
		b = append(b, `,"correlation_id":"`...)
		b = append(b, m.CorrelationID...)
		b = append(b, '"')
	}
	if m.CausationID != "" {
		b = append(b, `,"causation_id":"`...)
		b = append(b, m.CausationID...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// rawRow is an event as the raw phase writes it into the bare table.
func rawRow(pos int64, stream string, version int64, e *eventstore.Event, meta []byte, now time.Time) []any {
	return []any{pos, e.ID, stream, version, e.Type, e.Source, nullable(e.Target), e.Meta.TenantID,
		nullable(e.Meta.CorrelationID), nullable(e.Meta.CausationID), nullable(e.Meta.Producer), int32(e.Meta.SchemaVersion),
		now, []byte(e.Payload), meta}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
