package projections

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Integer decodes a JSON number the way the event schemas judge an
// integer: JSON Schema counts any number with no fractional part, so 12,
// 12.0 and 1.2e1 all pass validation at append time, while encoding/json
// refuses the last two for a Go int. A read model that decoded a schema
// integer into an int would park valid events; it decodes into Integer.
//
// A number with a fractional part, a string, or an integer beyond the
// int64 range is refused: the handler returns that as a permanent error,
// which parks the event. null leaves the value (or pointer) unchanged, as
// it does for any Go number.
type Integer int64

// maxIntDigits is the number of digits of the largest int64.
const maxIntDigits = 19

// UnmarshalJSON implements json.Unmarshaler.
func (n *Integer) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		*n = Integer(i)
		return nil
	}
	i, err := parseInteger(s)
	if err != nil {
		return fmt.Errorf("decode %.40s as an integer: %w", s, err)
	}
	*n = Integer(i)
	return nil
}

// parseInteger parses a JSON number whose value is an integer, written
// with a fraction or an exponent. It does the arithmetic on the digits
// rather than through big.Rat or float64: the first would compute 10 to a
// huge exponent a payload may name, the second loses digits past 2^53.
func parseInteger(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	whole, frac, _ := strings.Cut(mant, ".")
	if whole == "" || !digitsOnly(whole) || !digitsOnly(frac) {
		return 0, errNotNumber
	}
	digits := strings.TrimLeft(whole+frac, "0")
	digits, zeros := trimTrailingZeros(digits)
	if digits == "" {
		if hasExp {
			if _, err := exponent(expPart); err == errNotNumber {
				return 0, err
			}
		}
		return 0, nil // 0.0, -0e5: zero whatever the exponent
	}
	exp := 0
	if hasExp {
		e, err := exponent(expPart)
		if err != nil {
			return 0, err
		}
		exp = e
	}
	// The value is digits × 10^shift, digits ending in a non-zero digit.
	shift := int64(exp) + int64(zeros) - int64(len(frac))
	if shift < 0 {
		return 0, errFraction
	}
	if int64(len(digits))+shift > maxIntDigits {
		return 0, errRange
	}
	v := digits + strings.Repeat("0", int(shift))
	if neg {
		v = "-" + v
	}
	i, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errRange
	}
	return i, nil
}

var (
	errNotNumber = errors.New("not a JSON number")
	errFraction  = errors.New("it has a fractional part")
	errRange     = errors.New("out of the int64 range")
)

func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func trimTrailingZeros(s string) (string, int) {
	t := strings.TrimRight(s, "0")
	return t, len(s) - len(t)
}

// exponent parses an exponent; one too large for an int is out of range
// (a non-zero number times 10^±huge is no int64 integer either way).
func exponent(s string) (int, error) {
	s = strings.TrimPrefix(s, "+")
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	if body == "" || !digitsOnly(body) {
		return 0, errNotNumber
	}
	e, err := strconv.Atoi(s)
	if err != nil {
		if neg {
			return 0, errFraction
		}
		return 0, errRange
	}
	return e, nil
}
