package wholenum

import (
	"encoding/json"
	"testing"
)

// Whole numbers written with a fraction or an exponent become digits;
// strings that look like numbers, fractions, numbers beyond int64 and
// plain integers stay as written, and the result is the same JSON.
func TestNormalizeRewritesOnlyWholeNumbers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{`{"a":1.0}`, `{"a":1}`},
		{`{"a":1e2,"b":100.00,"c":-0.0,"d":-1.5e1}`, `{"a":100,"b":100,"c":0,"d":-15}`},
		{`[1.0, 2E0 ,3e+0,4.0e-0,50e-1]`, `[1, 2 ,3,4,5]`},
		{`{"s":"1.0","t":"a\"1.0\\","u":2.0}`, `{"s":"1.0","t":"a\"1.0\\","u":2}`},
		{`{"1.0":1.0}`, `{"1.0":1}`},
		{`{"x":9.223372036854775807e18,"y":-9.223372036854775808e18}`, `{"x":9223372036854775807,"y":-9223372036854775808}`},
		{`[true,null,false,0.0e99999999999999999999]`, `[true,null,false,0]`},
	} {
		got, changed := Normalize([]byte(c.in))
		if string(got) != c.want || !changed {
			t.Errorf("Normalize(%s) = %s, %v; want %s, true", c.in, got, changed, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("Normalize(%s) = %s: not JSON", c.in, got)
		}
	}
	for _, in := range []string{
		`{}`, `{"a":1,"b":-2,"c":0,"d":-0}`, `{"a":1.5,"b":1e-1,"c":1e30,"d":9223372036854775808,"e":9.3e18}`,
		`{"s":"1.0 1e2 -0.0"}`, `[1e99999999999999999999,-1e-99999999999999999999]`,
	} {
		got, changed := Normalize([]byte(in))
		if string(got) != in || changed {
			t.Errorf("Normalize(%s) = %s, %v; want it unchanged", in, got, changed)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want int64
	}{{"12", 12}, {"1.2e1", 12}, {"-0.0", 0}, {"0.00012e5", 12}, {"120E-1", 12}} {
		if got, err := Parse(c.in); err != nil || got != c.want {
			t.Errorf("Parse(%s) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for in, want := range map[string]error{
		"12.5": errFraction, "1e-1": errFraction, "1e-99999999999999999999": errFraction,
		"1e19": errRange, "9223372036854775808": errRange, "1e99999999999999999999": errRange, "1e1073741824": errRange,
		`"12"`: errNotNumber, "": errNotNumber, "-": errNotNumber, "1e": errNotNumber, ".5": errNotNumber,
	} {
		if _, err := Parse(in); err != want {
			t.Errorf("Parse(%s): %v, want %v", in, err, want)
		}
	}
}
