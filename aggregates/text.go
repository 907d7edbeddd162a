package aggregates

import "unicode"

// Blank reports whether s shows nothing: it is empty or holds only white
// space, control and format characters (such as U+200B ZERO WIDTH SPACE).
// A schema's minLength counts those as characters, so modules check names
// and titles with it.
func Blank(s string) bool {
	for _, r := range s {
		if !unicode.IsSpace(r) && !unicode.In(r, unicode.Cc, unicode.Cf) {
			return false
		}
	}
	return true
}
