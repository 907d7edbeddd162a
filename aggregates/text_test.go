package aggregates

import "testing"

func TestBlank(t *testing.T) {
	for _, s := range []string{"", " ", "\t\n", "\u200b", " \u00a0\u2003", "\x00\x1f", "\ufeff"} {
		if !Blank(s) {
			t.Errorf("Blank(%q) = false, want true: it shows nothing", s)
		}
	}
	for _, s := range []string{"a", " a ", "\u200bx", "日本", "-", "🚀"} {
		if Blank(s) {
			t.Errorf("Blank(%q) = true, want false", s)
		}
	}
}
