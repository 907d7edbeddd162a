// Package faultproxy is a TCP proxy for tests that cuts connections on
// demand: all of them, a random one, or the one whose traffic matches a
// condition (for example the server's reply to COMMIT, which makes the
// client's commit outcome unknown). A cut closes both sides at once, the
// way a network failure or a killed backend looks to a client.
package faultproxy

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
)

// Direction says which way a chunk of traffic flows.
type Direction int

const (
	// ToServer is client → server traffic.
	ToServer Direction = iota
	// ToClient is server → client traffic.
	ToClient
)

func (d Direction) String() string {
	if d == ToServer {
		return "to-server"
	}
	return "to-client"
}

// Chunk is one read from one side of a connection, before it is
// forwarded. Data is only valid during the call.
type Chunk struct {
	// Conn identifies the connection (1, 2, … in accept order).
	Conn uint64
	Dir  Direction
	Data []byte
}

// CutFunc decides, for each chunk, whether to cut its connection instead
// of forwarding the chunk. It is called from the proxy's goroutines,
// concurrently, before a stall is honoured: it may call SetStall(true) to
// hold the chunk it is looking at.
type CutFunc func(Chunk) bool

// Proxy forwards connections from its loopback address to a target.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	conns   map[*link]struct{}
	nextID  uint64
	cut     CutFunc
	refuse  bool
	closed  bool
	stalled bool
	unstall *sync.Cond // signalled when stalled turns false or the proxy closes

	wg                       sync.WaitGroup
	accepted, cuts, refused  atomic.Int64
	bytesToServer, bytesBack atomic.Int64
}

type link struct {
	id             uint64
	client, server net.Conn
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		// Closing with SO_LINGER 0 sends a reset, like a dead peer.
		for _, c := range []net.Conn{l.client, l.server} {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	})
}

// New listens on a free loopback port and forwards to target ("host:port").
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, conns: map[*link]struct{}{}}
	p.unstall = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// SetCut installs (or, with nil, removes) a condition checked on every
// chunk; when it returns true the connection is cut before the chunk is
// forwarded.
func (p *Proxy) SetCut(f CutFunc) {
	p.mu.Lock()
	p.cut = f
	p.mu.Unlock()
}

// SetRefuse makes the proxy accept and at once reset new connections (the
// server looks down) until called with false.
func (p *Proxy) SetRefuse(refuse bool) {
	p.mu.Lock()
	p.refuse = refuse
	p.mu.Unlock()
}

// SetStall stops (true) or resumes (false) forwarding on every
// connection, open or new, without closing any: the network hangs, as in a
// partition, instead of failing fast. Nothing crosses while it lasts: no
// data, no end of a connection (a side that closes is seen closing by the
// other only after the stall), no new connection to the target.
func (p *Proxy) SetStall(stall bool) {
	p.mu.Lock()
	p.stalled = stall
	p.mu.Unlock()
	if !stall {
		p.unstall.Broadcast()
	}
}

// CutAll cuts every open connection and returns how many it cut.
func (p *Proxy) CutAll() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
		delete(p.conns, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	p.cuts.Add(int64(len(links)))
	return len(links)
}

// CutRandom cuts one open connection chosen at random and reports whether
// there was one.
func (p *Proxy) CutRandom(r *rand.Rand) bool {
	p.mu.Lock()
	if len(p.conns) == 0 {
		p.mu.Unlock()
		return false
	}
	n := r.IntN(len(p.conns))
	var victim *link
	for l := range p.conns {
		if n == 0 {
			victim = l
			break
		}
		n--
	}
	delete(p.conns, victim)
	p.mu.Unlock()
	victim.close()
	p.cuts.Add(1)
	return true
}

// CutConn cuts the connection with the given id and reports whether it
// was open.
func (p *Proxy) CutConn(id uint64) bool {
	p.mu.Lock()
	var victim *link
	for l := range p.conns {
		if l.id == id {
			victim = l
			break
		}
	}
	p.mu.Unlock()
	return victim != nil && p.drop(victim)
}

// Open is the number of connections currently forwarded. A connection
// opened during a stall is not among them until the stall ends (it has
// not reached the target): wait for a client's own socket instead.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Stats counts the proxy's work.
type Stats struct {
	Accepted, Cuts, Refused int64
	BytesToServer           int64
	BytesToClient           int64
}

// Stats returns the counters since New.
func (p *Proxy) Stats() Stats {
	return Stats{Accepted: p.accepted.Load(), Cuts: p.cuts.Load(), Refused: p.refused.Load(),
		BytesToServer: p.bytesToServer.Load(), BytesToClient: p.bytesBack.Load()}
}

// Close stops listening, cuts every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.unstall.Broadcast()
	err := p.ln.Close()
	p.CutAll()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		// A hung network does not carry a new connection's handshake
		// either: the server sees it only once the stall is over.
		p.waitStall()
		p.mu.Lock()
		refuse, closed := p.refuse, p.closed
		p.mu.Unlock()
		if refuse || closed {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
			p.refused.Add(1)
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			p.refused.Add(1)
			continue
		}
		l := &link{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.close()
			continue
		}
		p.nextID++
		l.id = p.nextID
		p.conns[l] = struct{}{}
		p.mu.Unlock()
		p.accepted.Add(1)
		p.wg.Add(2)
		go p.pipe(l, ToServer, c, s, &p.bytesToServer)
		go p.pipe(l, ToClient, s, c, &p.bytesBack)
	}
}

func (p *Proxy) pipe(l *link, dir Direction, from, to net.Conn, counter *atomic.Int64) {
	defer p.wg.Done()
	defer p.forget(l)
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			cut := p.cut
			p.mu.Unlock()
			if cut != nil && cut(Chunk{Conn: l.id, Dir: dir, Data: buf[:n]}) {
				p.drop(l)
				return
			}
			// After the cut rule, so that a rule may stall the very chunk
			// it sees (SetStall from inside a CutFunc).
			p.waitStall()
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
			counter.Add(int64(n))
		}
		if err != nil {
			// Either side ending (EOF or error) ends the connection. The
			// end is traffic too: a hung network carries no FIN or reset
			// either, so the other side learns of it only once the stall
			// is over (a client that gives up during a partition must not
			// end its server session through the proxy).
			p.waitStall()
			return
		}
	}
}

// waitStall returns once the proxy is not stalled (or is closed).
func (p *Proxy) waitStall() {
	p.mu.Lock()
	for p.stalled && !p.closed {
		p.unstall.Wait()
	}
	p.mu.Unlock()
}

// drop cuts l if it is still open, counts the cut (before the client can
// notice it), and reports whether this call cut it.
func (p *Proxy) drop(l *link) bool {
	p.mu.Lock()
	_, open := p.conns[l]
	delete(p.conns, l)
	p.mu.Unlock()
	if open {
		p.cuts.Add(1)
	}
	l.close()
	return open
}

// forget closes l once either side ends, without counting a cut.
func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
	l.close()
}
