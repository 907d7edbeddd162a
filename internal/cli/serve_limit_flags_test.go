package cli_test

import (
	"context"
	"strings"
	"testing"
)

// TestServeRefusesBadLimitsAndAddressBeforeConnecting: a timeout or a
// size of 0 or less, which the server would quietly replace with its
// default (--read-timeout 0 meant 30s, not "none"), and a listen address
// that cannot be listened on whatever the host (no port, a port out of
// range) are usage errors (exit 2) found before serve connects. The URL
// has no server behind it: a serve that got as far as connecting would
// exit 75 instead, after migrating when a database answered.
func TestServeRefusesBadLimitsAndAddressBeforeConnecting(t *testing.T) {
	t.Parallel()
	checkServeFlags(t, []serveFlagCase{
		{[]string{"--read-header-timeout", "0"}, "--read-header-timeout 0s: want a duration above 0 (left unset: 10s)"},
		{[]string{"--read-timeout", "0"}, "--read-timeout 0s: want a duration above 0 (left unset: 30s)"},
		{[]string{"--read-timeout", "-1s"}, "--read-timeout -1s: want a duration above 0"},
		{[]string{"--write-timeout", "0"}, "--write-timeout 0s: want a duration above 0 (left unset: 1m0s)"},
		{[]string{"--idle-timeout", "-5m"}, "--idle-timeout -5m0s: want a duration above 0 (left unset: 2m0s)"},
		{[]string{"--request-timeout", "0"}, "--request-timeout 0s: want a duration above 0 (left unset: 30s)"},
		{[]string{"--max-page", "0"}, "--max-page 0: want at least 1 (left unset: 1000)"},
		{[]string{"--max-header-bytes", "-1"}, "--max-header-bytes -1: want at least 1 (left unset: 65536)"},
		{[]string{"--addr", "8080"}, `--addr "8080"`},
		{[]string{"--addr", "127.0.0.1"}, `--addr "127.0.0.1"`},
		{[]string{"--addr", ":99999"}, `--addr ":99999"`},
		{[]string{"--addr", "256.0.0.1:99999"}, `--addr "256.0.0.1:99999"`},
		{[]string{"--addr", ":-1"}, `--addr ":-1"`},
	}, [][]string{
		// Good values, a service name and a host-less port included, get as
		// far as connecting.
		{"--read-timeout", "1ns", "--max-page", "1", "--max-header-bytes", "1"},
		{"--addr", ":http"},
		{"--addr", "[::1]:0"},
		{"--addr", "localhost:8080"},
	})
}

// serveFlagCase is a set of serve flags and what their refusal says.
type serveFlagCase struct {
	args []string
	want string // in the message
}

// checkServeFlags runs serve with a database URL that no server answers.
// Each refused case must exit 2 before connecting, serving nothing, with
// its message; each accepted set of flags gets as far as connecting
// (exit 75, unavailable).
func checkServeFlags(t *testing.T, refused []serveFlagCase, accepted [][]string) {
	t.Helper()
	const nowhere = "postgres://root@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"
	c := &cli{t: t, dir: t.TempDir()}
	serve := func(args []string) result {
		return c.runIn(context.Background(), append([]string{"--database-url", nowhere, "serve", "--addr", "127.0.0.1:0"}, args...)...)
	}
	for _, tc := range refused {
		r := serve(tc.args)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "connect") || strings.Contains(r.stderr, "serving") {
			t.Errorf("serve %s: want exit 2 before connecting, with %q in the message; got %s", strings.Join(tc.args, " "), tc.want, r)
		}
	}
	for _, args := range accepted {
		if r := serve(args); r.code != 75 {
			t.Errorf("serve %s with no database: want exit 75 (unavailable), got %s", strings.Join(args, " "), r)
		}
	}
}
