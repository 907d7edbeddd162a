package server_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/brainhq/eventstream/eventstore/postgres"
	"github.com/brainhq/eventstream/internal/pgtest"
	"github.com/brainhq/eventstream/internal/server"
	"github.com/brainhq/eventstream/internal/syncbuf"
	"github.com/brainhq/eventstream/schemas"
)

// metricsFileConfig is a server's Config on a fresh schema whose GET
// /metrics asks for the secret in file, logging to logs.
func metricsFileConfig(t *testing.T, file string, logs *syncbuf.Buffer) server.Config {
	t.Helper()
	sreg := schemas.MustDefault()
	store, err := postgres.New(context.Background(), pgtest.Pool(t), sreg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	return server.Config{
		Store: store, Registry: sreg, Auth: server.NewAuthenticator(server.Tokens{server.TokenFor(acmeToken, "acme", "acme-app")}),
		Gatherer: reg, Logger: slog.New(slog.NewTextHandler(logs, nil)), MetricsTokenFile: file,
	}
}

// newMetricsFileEnv serves a server built from metricsFileConfig; of the
// env, only do and must work.
func newMetricsFileEnv(t *testing.T, file string, logs *syncbuf.Buffer) *env {
	t.Helper()
	s, err := server.New(metricsFileConfig(t, file, logs))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, h: s.Handler()}
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	return e
}

// wantScrapes fails the test unless GET /metrics with each secret as the
// bearer token ("": no header) gets its status, at once or, given a
// within, by then.
func (e *env) wantScrapes(when string, within time.Duration, want map[string]int) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var wrong []string
		for secret, code := range want {
			r := e.do("GET", "/metrics", secret, "")
			if r.code == 200 && !strings.Contains(r.body, "go_goroutines") {
				e.t.Fatalf("%s: GET /metrics: 200 without the metrics:\n%s", when, r.body)
			}
			if r.code != code {
				wrong = append(wrong, fmt.Sprintf("with %q: %d, want %d", secret, r.code, code))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if !time.Now().Before(deadline) {
			e.t.Fatalf("%s: GET /metrics\n%s", when, strings.Join(wrong, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// write replaces the content of path in place, as an editor or echo do.
func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsTokenFileIsReadAgainWhenItChanges: a new secret written to
// the metrics token file opens /metrics from the next request on, and the
// old one no longer does, without a restart: rewritten in place (at
// another length: the stat tells at once; at the same length and
// modification time, which a stat cannot tell: within a second), and
// replaced by a rename, as tools that write atomically and Kubernetes'
// secret volumes do.
func TestMetricsTokenFileIsReadAgainWhenItChanges(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "metrics-token")
	const first, second, third, fourth = "metrics-first-0a1b", "metrics-second-2c3d4e", "metrics-third-5f6a7b8", "metrics-fourth-8c9d"
	write(t, file, first+"\n")
	logs := &syncbuf.Buffer{}
	e := newMetricsFileEnv(t, file, logs)
	e.wantScrapes("as started", 0, map[string]int{first: 200, second: 401, "": 401, acmeToken: 401})

	write(t, file, second+"\n") // another length
	e.wantScrapes("rewritten in place", 0, map[string]int{second: 200, first: 401, "": 401})

	// The same length, and the modification time put back, as a
	// file system whose clock ticks coarsely shows a rewrite within the
	// tick: the stat cannot tell, but the file is read again all the
	// same while its last read is that close to its modification.
	was, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	write(t, file, third+"\n")
	if err := os.Chtimes(file, time.Time{}, was.ModTime()); err != nil {
		t.Fatal(err)
	}
	e.wantScrapes("rewritten in place at the same length and time", 2*time.Second, map[string]int{third: 200, second: 401, first: 401})

	tmp := filepath.Join(dir, ".metrics-token.new")
	write(t, tmp, fourth)
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	e.wantScrapes("replaced by a rename", 0, map[string]int{fourth: 200, third: 401, "": 401})
	// Still so once the file is old enough for its stat to be trusted.
	time.Sleep(2100 * time.Millisecond)
	e.wantScrapes("later", 0, map[string]int{fourth: 200, third: 401, first: 401})

	if n := logs.Lines("metrics token file read again", "secret_changed=true"); n != 3 {
		t.Errorf("%d log lines say the secret changed, want 3 (one per change):\n%s", n, logs.String())
	}
	for _, s := range []string{first, second, third, fourth} {
		if logs.Lines(s) > 0 {
			t.Fatalf("the log shows a metrics secret:\n%s", logs.String())
		}
	}
}

// TestMetricsTokenFileFollowsASwappedLink: the metrics token file as a
// Kubernetes secret volume shows it, a symbolic link into a directory
// that an update replaces by swapping another link: the new secret takes
// over at once.
func TestMetricsTokenFileFollowsASwappedLink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const old, next = "metrics-old-link", "metrics-new-link" // the same length
	for name, secret := range map[string]string{"..v1": old, "..v2": next} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "metrics-token"), secret)
	}
	link := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	link("..v1", "..data")
	link(filepath.Join("..data", "metrics-token"), "metrics-token")
	e := newMetricsFileEnv(t, filepath.Join(dir, "metrics-token"), &syncbuf.Buffer{})
	e.wantScrapes("as started", 0, map[string]int{old: 200, next: 401})

	link("..v2", "..data_tmp")
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	e.wantScrapes("the link swapped", 0, map[string]int{next: 200, old: 401})
}

// TestMetricsTokenFileWithoutASecretKeepsTheLastOne: a metrics token file
// that becomes empty, unreadable, missing or invalid never opens /metrics
// (nor turns it into "no header needed"): the last secret read stays in
// use, the error is logged once, not per request, and a valid secret
// written later takes over.
func TestMetricsTokenFileWithoutASecretKeepsTheLastOne(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		spoil func(t *testing.T, file string)
		want  string // in the log
	}{
		{"emptied", func(t *testing.T, file string) { write(t, file, "") }, "is empty"},
		{"a newline only", func(t *testing.T, file string) { write(t, file, "\n") }, "is empty"},
		{"two lines", func(t *testing.T, file string) { write(t, file, "metrics-last-good\nmore\n") }, "want printable ASCII without spaces"},
		{"removed", func(t *testing.T, file string) {
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
		}, "no such file or directory"},
		{"a directory", func(t *testing.T, file string) {
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(file, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "is a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			const good, next = "metrics-last-good", "metrics-next-good-1234"
			file := filepath.Join(t.TempDir(), "metrics-token")
			write(t, file, good+"\n")
			logs := &syncbuf.Buffer{}
			e := newMetricsFileEnv(t, file, logs)
			e.wantScrapes("as started", 0, map[string]int{good: 200, "": 401})

			c.spoil(t, file)
			for range 3 {
				e.wantScrapes("spoilt", 0, map[string]int{good: 200, "": 401, "more": 401, next: 401})
			}
			if n := logs.Lines("level=ERROR", "metrics token file", c.want); n != 1 {
				t.Fatalf("%d errors logged with %q after a few scrapes, want 1:\n%s", n, c.want, logs.String())
			}

			if fi, err := os.Stat(file); err == nil && fi.IsDir() {
				if err := os.Remove(file); err != nil {
					t.Fatal(err)
				}
			}
			write(t, file, next+"\n")
			e.wantScrapes("a secret written again", 2*time.Second, map[string]int{next: 200, good: 401, "": 401})
			if n := logs.Lines("level=INFO", "metrics token file read again", "secret_changed=true"); n != 1 {
				t.Fatalf("%d log lines say the file was read again, want 1:\n%s", n, logs.String())
			}
		})
	}
}

// A metrics token file that holds no secret when the server is built is
// refused, and so is a metrics token given both ways.
func TestNewRefusesABadMetricsTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []struct{ name, content, want string }{
		{"empty", "", "is empty"},
		{"spaced", " s3cret\n", "want printable ASCII without spaces"},
	} {
		file := filepath.Join(dir, c.name)
		write(t, file, c.content)
		if _, err := server.New(metricsFileConfig(t, file, &syncbuf.Buffer{})); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("server.New with a metrics token file %s: %v, want a refusal saying %q", c.name, err, c.want)
		}
	}
	if _, err := server.New(metricsFileConfig(t, filepath.Join(dir, "missing"), &syncbuf.Buffer{})); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("server.New with a missing metrics token file: %v, want a refusal", err)
	}
	file := filepath.Join(dir, "good")
	write(t, file, "s3cret\n")
	cfg := metricsFileConfig(t, file, &syncbuf.Buffer{})
	h := sha256.Sum256([]byte("s3cret"))
	cfg.MetricsToken = &h
	if _, err := server.New(cfg); err == nil || !strings.Contains(err.Error(), "set one") {
		t.Errorf("server.New with a metrics token and a metrics token file: %v, want a refusal", err)
	}
	cfg.MetricsToken = nil // the control
	if _, err := server.New(cfg); err != nil {
		t.Errorf("server.New with a metrics token file: %v", err)
	}
}
