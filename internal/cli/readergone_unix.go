//go:build unix

package cli

import (
	"context"
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// watchReader calls gone once, and returns, when the reader of w goes
// away: the other end of a pipe closed (`tail | head -1` after head
// exits), a socket's peer hung up, a terminal hung up. A command that
// prints only when something happens (tail) would otherwise learn it only
// from its next write, which on a quiet log may never come. It returns
// when ctx ends, and does nothing when w is not a file.
func watchReader(ctx context.Context, w io.Writer, gone func()) {
	f, ok := w.(*os.File)
	if !ok {
		return
	}
	// Duplicate the descriptor: polling f's own could outlive f. Through
	// SyscallConn, not f.Fd(), which would put a non-blocking stdout (an
	// inherited pipe's mode, shared with every process writing to it)
	// into blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	fd := -1
	if cerr := rc.Control(func(s uintptr) { fd, err = unix.Dup(int(s)) }); cerr != nil || err != nil {
		return
	}
	defer unix.Close(fd)
	for ctx.Err() == nil {
		// No events asked for: POLLERR (a pipe with no reader) and
		// POLLHUP are reported regardless. The timeout bounds how long
		// this outlives ctx.
		fds := []unix.PollFd{{Fd: int32(fd)}}
		n, err := unix.Poll(fds, 250)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		if n > 0 {
			if fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
				gone()
			}
			return // POLLNVAL and the like: nothing to watch
		}
	}
}
