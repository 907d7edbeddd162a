package eventstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/brainhq/eventstream/eventstore"
)

func TestDecodeJSONNumberRange(t *testing.T) {
	for _, ok := range []string{`1e999`, `-1e-1000`, `123456789012345678901234567890`, `0.000001`, `1.5e3`, `[1e10, -0.5e-10]`} {
		if _, err := eventstore.DecodeJSON([]byte(ok)); err != nil {
			t.Errorf("DecodeJSON(%s): %v, want it kept", ok, err)
		}
	}
	for _, bad := range []string{`1e1001`, `1e1000000`, `1e-20000`, `0.` + strings.Repeat("1", 1001), strings.Repeat("9", 1001), `1e99999999999999999999`} {
		_, err := eventstore.DecodeJSON([]byte(bad))
		var je *eventstore.JSONError
		if !errors.As(err, &je) || je.Rule != "number-range" {
			t.Errorf("DecodeJSON(%.40s): %v, want rule number-range", bad, err)
		}
	}
}

func TestDecodeJSONSurrogates(t *testing.T) {
	if _, err := eventstore.DecodeJSON([]byte(`"\ud83d\ude00"`)); err != nil {
		t.Fatalf("a surrogate pair: %v", err)
	}
	for _, bad := range []string{`"\ud800"`, `"\udc00"`, `"\ud800x"`, `"\ud800\u0041"`} {
		_, err := eventstore.DecodeJSON([]byte(bad))
		var je *eventstore.JSONError
		if !errors.As(err, &je) || je.Rule != "surrogate" {
			t.Errorf("DecodeJSON(%s): %v, want rule surrogate", bad, err)
		}
	}
}

func TestJSONEqual(t *testing.T) {
	same := [][2]string{
		{`{"a":1,"b":[1,2]}`, `{ "b" : [1, 2], "a" : 1.0 }`},
		{`123456789012345678901234567890`, `1.23456789012345678901234567890e29`},
		{`{"x":null}`, `{"x": null}`},
	}
	for _, c := range same {
		if !eventstore.JSONEqual([]byte(c[0]), []byte(c[1])) {
			t.Errorf("JSONEqual(%s, %s) = false, want true", c[0], c[1])
		}
	}
	differ := [][2]string{
		{`{"a":1}`, `{"a":"1"}`},
		{`123456789012345678901234567890`, `123456789012345678901234567891`}, // equal as float64
		{`[1,2]`, `[2,1]`},
		{`{"a":1}`, `{"a":1,"b":2}`},
		{`{"a":1}`, `not json`},
	}
	for _, c := range differ {
		if eventstore.JSONEqual([]byte(c[0]), []byte(c[1])) {
			t.Errorf("JSONEqual(%s, %s) = true, want false", c[0], c[1])
		}
	}
}
