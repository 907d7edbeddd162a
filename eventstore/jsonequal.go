package eventstore

import (
	"encoding/json"
	"math/big"
	"reflect"
)

// JSONEqual reports whether stored, JSON read back from a store, and b,
// the JSON compared with it (a retried append's), are the same JSON value,
// as PostgreSQL's jsonb equality sees it: object key order and whitespace
// do not matter, numbers compare by value (1.0 equals 1, and digits beyond
// float64 count). Invalid JSON is equal to nothing.
//
// stored is decoded without MaxJSONExpansion (DecodeStoredJSON): a stored
// event may exceed it, and a retry of its append must still be recognised.
// b keeps the limit, raised by what stored took. A b equal to stored
// differs from it only in whitespace, key order, escapes and the spelling
// of numbers, which cost b at most 16 bytes for each of its own bytes on
// top of what stored cost (a comma that makes an array's count exceed
// stored's, an escaped key that stored has plain): within its own
// allowance, so it always fits. A b that does not fit is not equal, and
// is refused before it takes more than stored plus its allowance.
func JSONEqual(stored, b []byte) bool {
	x, cost, err := decodeWithin(stored, nil, noJSONBudget)
	if err != nil {
		return false
	}
	y, _, err := decodeWithin(b, nil, cost+jsonBudget(len(b)))
	if err != nil {
		return false
	}
	return ValueEqual(x, y)
}

// ValueEqual compares two values decoded by DecodeJSON the way JSONEqual
// does.
func ValueEqual(x, y any) bool {
	switch a := x.(type) {
	case map[string]any:
		b, ok := y.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			if bv, ok := b[k]; !ok || !ValueEqual(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := y.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !ValueEqual(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := y.(json.Number)
		if !ok {
			return false
		}
		if a == b {
			return true
		}
		ra, oka := new(big.Rat).SetString(string(a))
		rb, okb := new(big.Rat).SetString(string(b))
		return oka && okb && ra.Cmp(rb) == 0
	}
	return reflect.DeepEqual(x, y)
}

// SameContent reports whether a stored event carries what p would store:
// the same stream, type, source and target, and payload and meta of the
// same JSON value. Backends use it to tell an idempotent retry (same id,
// same content) from a reused id (ErrDuplicateEvent).
func SameContent(stored Event, p Prepared) bool {
	if !sameEnvelope(stored, p) {
		return false
	}
	meta, err := json.Marshal(stored.Meta)
	if err != nil {
		return false
	}
	return JSONEqual(stored.Payload, p.Payload) && JSONEqual(meta, p.MetaJSON)
}

// SameStoredContent is SameContent for a backend that keeps an event's
// meta as JSON: storedMeta is compared with p's, and stored.Meta is not
// looked at.
func SameStoredContent(stored Event, storedMeta []byte, p Prepared) bool {
	return sameEnvelope(stored, p) && JSONEqual(stored.Payload, p.Payload) && JSONEqual(storedMeta, p.MetaJSON)
}

// SameLayout reports whether stored, the stored events of a retried
// append's ids in the append's order, lie as that append would have
// written them: in one stream, at consecutive versions, in that order.
// Only then is the append a retry. The same events in another order ([b, a]
// for a stored [a, b]) or with a gap ([a, c] of a stored [a, b, c]) would
// have had other versions and positions, so their original result is not
// this append's result: the backends refuse them with ErrDuplicateEvent.
// A consecutive part of a stored append ([a, b] or [b] of [a, b, c]) is a
// retry of those events and returns them as stored.
func SameLayout(stored []Event) bool {
	for i := 1; i < len(stored); i++ {
		if stored[i].Stream != stored[0].Stream || stored[i].Version != stored[0].Version+int64(i) {
			return false
		}
	}
	return true
}

func sameEnvelope(stored Event, p Prepared) bool {
	return stored.Stream == p.Stream && stored.Type == p.Type && stored.Source == p.Source && stored.Target == p.Target
}
