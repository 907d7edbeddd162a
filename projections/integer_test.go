package projections_test

import (
	"encoding/json"
	"testing"

	"github.com/brainhq/eventstream/projections"
)

// Every way JSON Schema lets a payload write an integer decodes to it;
// what is no integer, or none an int64 holds, is refused.
func TestIntegerDecodesWhatTheSchemasCallAnInteger(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"12", 12}, {"12.0", 12}, {"1.2e1", 12}, {"1.2E+1", 12}, {"120e-1", 12}, {"-12.000", -12},
		{"0", 0}, {"-0.0", 0}, {"0e-7", 0}, {"0.0e99999999999999999999", 0},
		{"9223372036854775807", 9223372036854775807}, {"9.223372036854775807e18", 9223372036854775807},
		{"-9223372036854775808", -9223372036854775808}, {"-9.223372036854775808e18", -9223372036854775808},
		{"0.00012e5", 12},
	} {
		var got struct{ N projections.Integer }
		if err := json.Unmarshal([]byte(`{"N":`+c.in+`}`), &got); err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if int64(got.N) != c.want {
			t.Errorf("%s = %d, want %d", c.in, got.N, c.want)
		}
	}
	for _, in := range []string{
		"12.5", "1.25e1", "1e-1", "120e-2", `"12"`, "true", "[]", "{}",
		"9223372036854775808", "9.3e18", "1e19", "-9223372036854775809", "1e99999999999999999999", "1e-99999999999999999999",
	} {
		var got struct{ N projections.Integer }
		if err := json.Unmarshal([]byte(`{"N":`+in+`}`), &got); err == nil {
			t.Errorf("%s decoded as %d, want an error", in, got.N)
		}
	}
	var p struct{ N *projections.Integer }
	if err := json.Unmarshal([]byte(`{"N":null}`), &p); err != nil || p.N != nil {
		t.Fatalf("null: %v %v", p.N, err)
	}
}
