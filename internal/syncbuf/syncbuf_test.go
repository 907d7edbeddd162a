package syncbuf

import (
	"fmt"
	"sync"
	"testing"
)

// Writers on many goroutines lose no line and interleave none (run with
// -race), and Lines counts the lines that hold every part.
func TestBufferTakesConcurrentWriters(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				fmt.Fprintf(&b, "writer=%d line=%d\n", w, i)
				_ = b.Len()
			}
		}()
	}
	wg.Wait()
	if n := b.Lines("writer="); n != 800 {
		t.Fatalf("%d whole lines, want 800", n)
	}
	if n := b.Lines("writer=3 ", "line=7"); n != 11 { // line=7 and line=70 to line=79
		t.Fatalf("Lines(writer=3, line=7) = %d, want 11", n)
	}
}
