package projections

import (
	"fmt"

	"github.com/brainhq/eventstream/internal/wholenum"
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

// UnmarshalJSON implements json.Unmarshaler.
func (n *Integer) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	i, err := wholenum.Parse(s)
	if err != nil {
		return fmt.Errorf("decode %.40s as an integer: %w", s, err)
	}
	*n = Integer(i)
	return nil
}
