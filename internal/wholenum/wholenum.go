// Package wholenum reads JSON numbers the way the event schemas judge an
// integer. JSON Schema counts any number with no fractional part as an
// integer, so 12, 12.0, 1.2e1 and -0.0 all pass validation at append
// time, while encoding/json refuses all but the first for a Go int. The
// aggregates and the read models decode stored payloads into Go integers;
// they use this package to take what the schemas took.
package wholenum

import (
	"errors"
	"strconv"
	"strings"
)

var (
	errNotNumber = errors.New("not a JSON number")
	errFraction  = errors.New("it has a fractional part")
	errRange     = errors.New("out of the int64 range")
)

// maxIntDigits is the number of digits of the largest int64.
const maxIntDigits = 19

// maxExponent bounds the exponents Parse does arithmetic with (it fits an
// int on every platform). A number has far fewer digits than this (the
// store takes at most 1,000 on either side of the point), so a non-zero
// number with a larger exponent is out of range, and one with a smaller
// (negative) exponent has a fraction.
const maxExponent = 1 << 30

// Parse returns the value of the JSON number s when it is an integer an
// int64 holds, however it is written (12, 12.0, 1.2e1, 120e-1, -0.0). It
// does the arithmetic on the digits rather than through big.Rat or
// float64: the first would compute 10 to a huge exponent a payload may
// name, the second loses digits past 2^53. The error says why s is no
// such integer: not a number, a fraction, or out of range.
func Parse(s string) (int64, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	whole, frac, _ := strings.Cut(mant, ".")
	if whole == "" || !digitsOnly(whole) || !digitsOnly(frac) {
		return 0, errNotNumber
	}
	exp := 0
	if hasExp {
		e, err := exponent(expPart)
		if err != nil {
			return 0, err
		}
		exp = e
	}
	digits := strings.TrimLeft(whole+frac, "0")
	digits, zeros := trimTrailingZeros(digits)
	if digits == "" {
		return 0, nil // 0.0, -0e5: zero whatever the exponent
	}
	if exp > maxExponent {
		return 0, errRange
	}
	if exp < -maxExponent {
		return 0, errFraction
	}
	// The value is digits × 10^shift, digits ending in a non-zero digit.
	shift := exp + zeros - len(frac)
	if shift < 0 {
		return 0, errFraction
	}
	if len(digits)+shift > maxIntDigits {
		return 0, errRange
	}
	v := digits + strings.Repeat("0", shift)
	if neg {
		v = "-" + v
	}
	i, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errRange
	}
	return i, nil
}

// Normalize rewrites, in the JSON text b, every number that is an integer
// an int64 holds but is written with a fraction or an exponent (1.0, 1e2,
// -0.0, 100.00) as plain digits (1, 100, 0, 100). Strings and every other
// number are left as they are: 1.5 stays a fraction and 1e30 stays out of
// range, for the decoder to refuse. It reports whether it changed
// anything; when it did not, it returns b itself.
//
// It reads b as JSON only as far as telling strings from numbers, so it
// is meant for text that is JSON (a stored payload); on anything else its
// result is as malformed as its input.
func Normalize(b []byte) ([]byte, bool) {
	var out []byte
	changed := false
	copied := 0 // b[:copied] is in out
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			i = skipString(b, i+1)
		case c == '-' || ('0' <= c && c <= '9'):
			j, plain := i+1, true
			for ; j < len(b) && isNumberByte(b[j]); j++ {
				if c := b[j]; c == '.' || c == 'e' || c == 'E' {
					plain = false
				}
			}
			if !plain {
				if n, err := Parse(string(b[i:j])); err == nil {
					out = append(out, b[copied:i]...)
					out = strconv.AppendInt(out, n, 10)
					copied, changed = j, true
				}
			}
			i = j
		default:
			i++
		}
	}
	if !changed {
		return b, false
	}
	return append(out, b[copied:]...), true
}

// skipString returns the index just past the string whose contents start
// at i.
func skipString(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case '\\':
			i += 2
		case '"':
			return i + 1
		default:
			i++
		}
	}
	return len(b)
}

func isNumberByte(c byte) bool {
	return ('0' <= c && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

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
			return -maxExponent - 1, nil
		}
		return maxExponent + 1, nil
	}
	return e, nil
}
