package esdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/protobuf/proto"

	"github.com/brainhq/eventstream/eventstore"
)

// formatVersion marks events written by eventstream in their metadata;
// events without it (written by other programs on a shared server) are not
// part of the log.
const formatVersion = 1

// eventMetadata is the JSON an event carries as its EventStoreDB metadata:
// the envelope fields that are not the type, id and payload.
// $correlationId and $causationId repeat meta's ids under the names
// EventStoreDB's system projections read ($by_correlation_id).
type eventMetadata struct {
	Format        int             `json:"eventstream"`
	Source        string          `json:"source"`
	Target        string          `json:"target,omitempty"`
	Meta          json.RawMessage `json:"meta"`
	CorrelationID string          `json:"$correlationId,omitempty"`
	CausationID   string          `json:"$causationId,omitempty"`
}

const contentTypeJSON = "application/json"

func encode(p eventstore.Prepared) (client.EventData, error) {
	md, err := json.Marshal(eventMetadata{
		Format:        formatVersion,
		Source:        p.Source,
		Target:        p.Target,
		Meta:          p.MetaJSON,
		CorrelationID: p.Meta.CorrelationID,
		CausationID:   p.Meta.CausationID,
	})
	if err != nil {
		return client.EventData{}, fmt.Errorf("encode metadata of event %s: %w", p.ID, err)
	}
	return client.EventData{
		EventID:     p.ID,
		EventType:   p.Type,
		ContentType: client.ContentTypeJson,
		Data:        p.Payload,
		Metadata:    md,
	}, nil
}

// appendSize is what EventStoreDB counts against MaxAppendSize for one
// event: the protobuf size of the proposed message, built as the client
// builds it.
func appendSize(e client.EventData) int {
	return proto.Size(&streams.AppendReq_ProposedMessage{
		Id: &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
			MostSignificantBits: -1, LeastSignificantBits: -1, // the widest varints
		}}},
		Metadata:       map[string]string{"type": e.EventType, "content-type": contentTypeJSON},
		CustomMetadata: e.Metadata,
		Data:           e.Data,
	})
}

// decode turns a recorded event into an envelope. ok is false for events
// that are not part of the log: system events (types starting with $),
// events outside the store's namespace, and events without eventstream's
// metadata.
func (s *Store) decode(r *client.RecordedEvent) (e eventstore.Event, ok bool, err error) {
	if r == nil || strings.HasPrefix(r.EventType, "$") || !strings.HasPrefix(r.StreamID, s.ns) {
		return e, false, nil
	}
	var md eventMetadata
	if r.ContentType != contentTypeJSON || json.Unmarshal(r.UserMetadata, &md) != nil || md.Format == 0 {
		return e, false, nil
	}
	if md.Format != formatVersion {
		return e, false, fmt.Errorf("event %s in %s@%d has metadata format %d; this eventstream reads %d", r.EventID, r.StreamID, r.EventNumber, md.Format, formatVersion)
	}
	e = eventstore.Event{
		ID:        r.EventID,
		Type:      r.EventType,
		Stream:    strings.TrimPrefix(r.StreamID, s.ns),
		Version:   int64(r.EventNumber) + 1,
		Position:  eventstore.Position{Commit: r.Position.Commit, Prepare: r.Position.Prepare},
		Source:    md.Source,
		Target:    md.Target,
		Timestamp: r.CreatedDate.UTC(),
		Payload:   json.RawMessage(bytes.Clone(r.Data)),
	}
	if len(md.Meta) > 0 {
		if err := json.Unmarshal(md.Meta, &e.Meta); err != nil {
			return e, false, fmt.Errorf("event %s in %s@%d: meta: %w", r.EventID, r.StreamID, r.EventNumber, err)
		}
	}
	return e, true, nil
}
