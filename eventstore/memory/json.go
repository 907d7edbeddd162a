package memory

import (
	"encoding/json"
	"math/big"

	"github.com/brainhq/eventstream/eventstore"
)

// jsonEqual reports whether a and b are the same JSON value, as PostgreSQL's
// jsonb equality sees it: key order and whitespace do not matter, numbers
// compare by value (1.0 equals 1, and digits beyond float64 count).
func jsonEqual(a, b []byte) bool {
	x, err := eventstore.DecodeJSON(a)
	if err != nil {
		return false
	}
	y, err := eventstore.DecodeJSON(b)
	if err != nil {
		return false
	}
	return valueEqual(x, y)
}

func valueEqual(x, y any) bool {
	switch a := x.(type) {
	case map[string]any:
		b, ok := y.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			if bv, ok := b[k]; !ok || !valueEqual(av, bv) {
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
			if !valueEqual(a[i], b[i]) {
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
	case string, bool, nil:
		return x == y
	}
	return false
}
