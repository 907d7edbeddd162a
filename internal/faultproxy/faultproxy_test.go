package faultproxy_test

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brainhq/eventstream/internal/faultproxy"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, p *faultproxy.Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func roundTrip(c net.Conn, r *bufio.Reader, line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	s, err := r.ReadString('\n')
	return string(bytes.TrimSuffix([]byte(s), []byte("\n"))), err
}

func newProxy(t *testing.T) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func waitOpen(t *testing.T, p *faultproxy.Proxy, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("open connections = %d, want %d", p.Open(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestForwardsThenCutAllBreaksEveryConnection(t *testing.T) {
	p := newProxy(t)
	c1, r1 := dial(t, p)
	c2, r2 := dial(t, p)
	for _, x := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{c1, r1}, {c2, r2}} {
		if got, err := roundTrip(x.c, x.r, "hello"); err != nil || got != "hello" {
			t.Fatalf("round trip = %q, %v", got, err)
		}
	}
	waitOpen(t, p, 2)
	if n := p.CutAll(); n != 2 {
		t.Fatalf("CutAll = %d, want 2", n)
	}
	if _, err := roundTrip(c1, r1, "again"); err == nil {
		t.Fatal("a cut connection still answered")
	}
	// New connections still work.
	c3, r3 := dial(t, p)
	if got, err := roundTrip(c3, r3, "new"); err != nil || got != "new" {
		t.Fatalf("after CutAll: %q, %v", got, err)
	}
	if s := p.Stats(); s.Cuts != 2 || s.Accepted != 3 {
		t.Fatalf("stats = %+v, want 2 cuts of 3 accepted", s)
	}
}

func TestCutRandomCutsExactlyOne(t *testing.T) {
	p := newProxy(t)
	conns := make([]net.Conn, 3)
	readers := make([]*bufio.Reader, 3)
	for i := range conns {
		conns[i], readers[i] = dial(t, p)
		if _, err := roundTrip(conns[i], readers[i], "x"); err != nil {
			t.Fatal(err)
		}
	}
	waitOpen(t, p, 3)
	if !p.CutRandom(rand.New(rand.NewPCG(1, 2))) {
		t.Fatal("CutRandom found nothing to cut")
	}
	alive := 0
	for i := range conns {
		if _, err := roundTrip(conns[i], readers[i], "y"); err == nil {
			alive++
		}
	}
	if alive != 2 {
		t.Fatalf("%d connections alive after CutRandom, want 2", alive)
	}
}

func TestCutWhenTrafficMatches(t *testing.T) {
	p := newProxy(t)
	// Cut when the server's answer carries "COMMIT": the request reached
	// the server, the client never hears back.
	p.SetCut(func(c faultproxy.Chunk) bool {
		return c.Dir == faultproxy.ToClient && bytes.Contains(c.Data, []byte("COMMIT"))
	})
	c, r := dial(t, p)
	if got, err := roundTrip(c, r, "BEGIN"); err != nil || got != "BEGIN" {
		t.Fatalf("%q, %v", got, err)
	}
	if _, err := roundTrip(c, r, "COMMIT"); err == nil {
		t.Fatal("the reply to COMMIT went through")
	}
	if s := p.Stats(); s.Cuts != 1 {
		t.Fatalf("cuts = %d, want 1", s.Cuts)
	}
}

func TestRefuseRefusesNewConnectionsOnly(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "x"); err != nil {
		t.Fatal(err)
	}
	p.SetRefuse(true)
	// A refused connection is reset: at once (dial fails) or on first use.
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		defer c2.Close()
		if _, err := roundTrip(c2, bufio.NewReader(c2), "x"); err == nil {
			t.Fatal("a refused connection answered")
		}
	}
	if _, err := roundTrip(c, r, "still"); err != nil {
		t.Fatalf("an open connection broke on SetRefuse: %v", err)
	}
	p.SetRefuse(false)
	c3, r3 := dial(t, p)
	if _, err := roundTrip(c3, r3, "x"); err != nil {
		t.Fatalf("after SetRefuse(false): %v", err)
	}
}

func TestCutConnCutsThatConnectionOnly(t *testing.T) {
	p := newProxy(t)
	// Remember which connection sent "LISTEN", then cut exactly that one.
	var listener atomic.Uint64
	p.SetCut(func(c faultproxy.Chunk) bool {
		if c.Dir == faultproxy.ToServer && bytes.HasPrefix(c.Data, []byte("LISTEN")) {
			listener.Store(c.Conn)
		}
		return false
	})
	a, ra := dial(t, p)
	b, rb := dial(t, p)
	if _, err := roundTrip(a, ra, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(b, rb, "LISTEN x"); err != nil {
		t.Fatal(err)
	}
	if listener.Load() == 0 || !p.CutConn(listener.Load()) {
		t.Fatalf("CutConn(%d) found no open connection", listener.Load())
	}
	if p.CutConn(listener.Load()) {
		t.Fatal("CutConn cut the same connection twice")
	}
	if _, err := roundTrip(b, rb, "again"); err == nil {
		t.Fatal("the cut connection still answered")
	}
	if _, err := roundTrip(a, ra, "again"); err != nil {
		t.Fatalf("the other connection broke: %v", err)
	}
}

func TestStallHoldsTrafficUntilResumed(t *testing.T) {
	p := newProxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "before"); err != nil {
		t.Fatal(err)
	}
	p.SetStall(true)
	_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := io.WriteString(c, "held\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("traffic went through a stalled proxy")
	}
	p.SetStall(false)
	// The held line arrives once the stall ends; the connection was not cut.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := r.ReadString('\n')
	if err != nil || got != "held\n" {
		t.Fatalf("after the stall: %q, %v", got, err)
	}
	if s := p.Stats(); s.Cuts != 0 {
		t.Fatalf("a stall cut %d connections", s.Cuts)
	}
}

// TestStallHoldsConnectionEndsAndNewConnections checks that a stall is a
// hung network in both senses the fault tests rely on: a client that
// gives up and closes its connection during the stall is not seen closing
// by the server until the stall ends (a partitioned client must not end
// its server session, and so free its locks, through the proxy), and a
// connection opened during the stall does not reach the server until then.
func TestStallHoldsConnectionEndsAndNewConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	p, err := faultproxy.New(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var server net.Conn
	select {
	case server = <-accepted:
		t.Cleanup(func() { server.Close() })
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the connection")
	}
	waitOpen(t, p, 1)

	p.SetStall(true)
	c.Close()
	ended := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 1))
		ended <- err
	}()
	select {
	case err := <-ended:
		t.Fatalf("the server saw the client's close during the stall (%v): the stall let the end of the connection through", err)
	case <-time.After(300 * time.Millisecond):
	}

	late, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	select {
	case s := <-accepted:
		s.Close()
		t.Fatal("a connection opened during the stall reached the server")
	case <-time.After(300 * time.Millisecond):
	}

	p.SetStall(false)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the client's close after the stall")
	}
	select {
	case s := <-accepted:
		s.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the connection opened during the stall never reached the server after it")
	}
}
