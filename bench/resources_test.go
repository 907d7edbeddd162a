package bench

import (
	"runtime"
	"testing"
)

// TestPeakRSSWindowStartsBelowWhatAPhaseFreed: a phase's peak-memory
// window starts from what the process holds once the last phase's garbage
// is returned to the system, not from memory freed but still resident.
// With a collection alone the heap the last phase freed stayed resident,
// so the next phase's peak started at the last phase's: raw's peak was
// ours whatever raw used.
func TestPeakRSSWindowStartsBelowWhatAPhaseFreed(t *testing.T) {
	const size = 256 << 20
	b := make([]byte, size)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	held := peakRSS()
	runtime.KeepAlive(b)
	b = nil
	if !resetPeakRSS() {
		t.Skip("no /proc/self/clear_refs: the peak is the process's since start")
	}
	if got := peakRSS(); got > held-size/2 {
		t.Fatalf("peak after the reset is %d MiB, the freed %d MiB still counted (%d MiB before)", got>>20, size>>20, held>>20)
	}
}
