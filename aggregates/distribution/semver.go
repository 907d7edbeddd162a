package distribution

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Bump is which part of a semantic version a bump increments.
type Bump string

// Bumps.
const (
	Major Bump = "major"
	Minor Bump = "minor"
	Patch Bump = "patch"
)

// Semver is a MAJOR.MINOR.PATCH version (no pre-release or build parts).
type Semver struct{ Major, Minor, Patch int }

// ParseSemver reads MAJOR.MINOR.PATCH with no leading zeros.
func ParseSemver(s string) (Semver, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Semver{}, fmt.Errorf("version %q: want MAJOR.MINOR.PATCH", s)
	}
	var n [3]int
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') || strings.TrimLeft(p, "0123456789") != "" {
			return Semver{}, fmt.Errorf("version %q: %q is not a number without leading zeros", s, p)
		}
		v, err := strconv.Atoi(p)
		if err != nil {
			return Semver{}, fmt.Errorf("version %q: %w", s, err)
		}
		n[i] = v
	}
	return Semver{n[0], n[1], n[2]}, nil
}

func (v Semver) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Next returns the version after a bump: a major bump resets minor and
// patch, a minor bump resets patch.
// A part already at the largest int has no next value: that bump is an
// error, not a wrap to a negative number.
func (v Semver) Next(b Bump) (Semver, error) {
	var part int
	switch b {
	case Major:
		part = v.Major
	case Minor:
		part = v.Minor
	case Patch:
		part = v.Patch
	default:
		return Semver{}, fmt.Errorf("bump %q: want major, minor or patch", b)
	}
	if part == math.MaxInt {
		return Semver{}, fmt.Errorf("a %s bump of %s: the %s number is at its largest", b, v, b)
	}
	switch b {
	case Major:
		return Semver{v.Major + 1, 0, 0}, nil
	case Minor:
		return Semver{v.Major, v.Minor + 1, 0}, nil
	default:
		return Semver{v.Major, v.Minor, v.Patch + 1}, nil
	}
}
