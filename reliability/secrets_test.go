package reliability_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/cli"
	"github.com/brainhq/eventstream/internal/pgcluster"
)

type cliRun struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, ctx context.Context, args ...string) cliRun {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Main(ctx, args, cli.IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return cliRun{code: code, stdout: out.String(), stderr: errOut.String()}
}

func randomSecret(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// TestSecretsNeverReachLogsErrorsOrHelp runs the CLI, at debug log level
// and in JSON mode, with database and EventStoreDB passwords in URLs that
// fail in every way (nothing listening, a wrong password on a real
// server, malformed, keyword/value form) and that succeed, and with a
// password in $DATABASE_URL while printing --help. No output ever holds a
// password. A token's secret is printed once, on stdout, when it is
// created, and never again.
func TestSecretsNeverReachLogsErrorsOrHelp(t *testing.T) {
	// Not parallel: it sets $DATABASE_URL.
	right := randomSecret("Right-")
	wrong := randomSecret("Wrong-")
	cluster := pgcluster.Start(t, pgcluster.Options{Password: right})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now

	check := func(what string, r cliRun, secrets ...string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
				t.Errorf("%s: the output holds a secret (exit %d):\nstdout: %s\nstderr: %s", what, r.code, clip(r.stdout), clip(r.stderr))
			}
		}
	}
	failing := map[string]string{
		"nothing listening":      "postgres://alice:" + wrong + "@" + deadAddr + "/db?sslmode=disable",
		"wrong password":         cluster.URLAs(pgcluster.Superuser, wrong, ""),
		"malformed port":         "postgres://alice:" + wrong + "@127.0.0.1:notaport/db",
		"malformed host":         "postgres://alice:" + wrong + "@[::1/db",
		"bad option":             "postgres://alice:" + wrong + "@127.0.0.1:1/db?sslmode=sometimes",
		"keyword/value":          "host=127.0.0.1 port=1 user=alice password=" + wrong + " dbname=db sslmode=disable",
		"keyword/value, garbled": "host=127.0.0.1 password='" + wrong,
	}
	// The exit code tells an outage (75: no server answered, retry later)
	// from a server that answered with a refusal (1).
	wantCode := map[string]int{
		"nothing listening": cli.ExitUnavailable,
		"keyword/value":     cli.ExitUnavailable,
		"wrong password":    cli.ExitFailure,
	}
	for name, u := range failing {
		for _, mode := range [][]string{{"--log-level", "debug"}, {"--json", "--log-level", "debug"}} {
			args := append(append([]string{"--database-url", u}, mode...), "migrate")
			r := runCLI(t, ctx, args...)
			if r.code == 0 {
				t.Errorf("%s: migrate succeeded", name)
			}
			if want, ok := wantCode[name]; ok && r.code != want {
				t.Errorf("%s %s: migrate exit %d, want %d", name, strings.Join(mode, " "), r.code, want)
			}
			check(name+" "+strings.Join(mode, " "), r, wrong)
		}
		// The library itself, for programs that embed it.
		if s, err := postgres.Open(ctx, u, registry(t)); err == nil {
			s.Close()
			t.Errorf("%s: postgres.Open succeeded", name)
		} else if strings.Contains(err.Error(), wrong) {
			t.Errorf("%s: postgres.Open's error holds the password: %v", name, err)
		}
	}

	// The wrong password's failure names the cause, without the password.
	r := runCLI(t, ctx, "--database-url", failing["wrong password"], "migrate")
	if !strings.Contains(r.stderr, "password") && !strings.Contains(r.stderr, "authentication") {
		t.Errorf("a wrong password gives an unhelpful error: %s", r.stderr)
	}

	// Success, at debug level: the right password stays out too.
	good := cluster.URL("")
	for _, args := range [][]string{
		{"--database-url", good, "--log-level", "debug", "migrate"},
		{"--database-url", good, "--log-level", "debug", "--json", "migrate"},
		{"--database-url", good, "--log-level", "debug", "read", "--all"},
		{"--database-url", good, "--log-level", "debug", "projections", "status"},
	} {
		r := runCLI(t, ctx, args...)
		if r.code != 0 {
			t.Errorf("%v: exit %d: %s", args[2:], r.code, r.stderr)
		}
		check(strings.Join(args[2:], " "), r, right)
	}

	// serve, started and stopped, logs at debug level without it.
	sctx, scancel := context.WithTimeout(ctx, 4*time.Second)
	r = runCLI(t, sctx, "--database-url", good, "--log-level", "debug", "serve", "--addr", "127.0.0.1:0", "--shutdown-timeout", "1s")
	scancel()
	if !strings.Contains(r.stderr, "serving") {
		t.Errorf("serve never started serving (exit %d), so its log proves nothing: %s", r.code, clip(r.stderr))
	}
	check("serve", r, right)

	// EventStoreDB connection strings.
	for _, u := range []string{
		"esdb://admin:" + wrong + "@" + deadAddr + "?tls=false",
		"esdb://admin:" + wrong + "@bad host:1?tls=false",
		"kurrentdb://admin:" + wrong + "@" + deadAddr + "?tls=false&maxDiscoverAttempts=1",
	} {
		ectx, ecancel := context.WithTimeout(ctx, 20*time.Second)
		r := runCLI(t, ectx, "--store", "esdb", "--eventstore-url", u, "--log-level", "debug", "read", "--all")
		ecancel()
		if r.code == 0 {
			t.Errorf("esdb %s: read succeeded", u)
		}
		// (kurrentdb:// is refused as a scheme this client does not take.)
		if strings.HasPrefix(u, "esdb://") && strings.Contains(u, deadAddr) && r.code != cli.ExitUnavailable {
			t.Errorf("esdb with no node answering: read exit %d, want %d (unavailable)", r.code, cli.ExitUnavailable)
		}
		check("esdb", r, wrong)
	}

	// Tokens: printed once when created, never in logs or lists.
	r = runCLI(t, ctx, "--database-url", good, "--log-level", "debug", "tokens", "create", "acme", "--name", "ci")
	token := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(token, "es_") {
		t.Fatalf("tokens create: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, token) {
		t.Errorf("tokens create logs the token: %s", r.stderr)
	}
	for _, args := range [][]string{{"tokens", "list"}, {"--json", "tokens", "list"}} {
		r := runCLI(t, ctx, append([]string{"--database-url", good, "--log-level", "debug"}, args...)...)
		if r.code != 0 {
			t.Errorf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		check(strings.Join(args, " "), r, token, token[3:], right)
	}

	// --help, with passwords in the environment.
	t.Setenv("DATABASE_URL", failing["nothing listening"])
	t.Setenv("EVENTSTORE_URL", "esdb://admin:"+wrong+"@"+deadAddr+"?tls=false")
	for _, args := range [][]string{{"--help"}, {"migrate", "--help"}, {"serve", "--help"}, {"tokens", "create", "--help"}, {"import", "--help"}, {"help", "serve"}} {
		r := runCLI(t, ctx, args...)
		if r.code != 0 {
			t.Errorf("%v: exit %d", args, r.code)
		}
		check(strings.Join(args, " "), r, wrong)
	}
	// And the failure through $DATABASE_URL.
	r = runCLI(t, ctx, "--log-level", "debug", "migrate")
	if r.code == 0 {
		t.Error("migrate through $DATABASE_URL succeeded with nothing listening")
	}
	check("$DATABASE_URL", r, wrong)
}
