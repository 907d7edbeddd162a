package projections

import (
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
)

// PanicError is a panic raised by a projection's own code (its handler, a
// reaction's function, Config.Upcast, Rewind, Config.OnPublish), which the
// runtime recovered and turned into an error. While an event is applied it
// is a failure of that event like any other: the transaction is rolled
// back, the event retried, then parked with this error's text (or the
// projection stopped, with StopOnError). One poison event therefore costs
// one dead-letter entry, not a process that crashes again at every start.
//
// The runtime recovers panics only around the calls of that code, never
// in its own code paths.
type PanicError struct {
	// Value is what was passed to panic. panic(nil) gives a
	// *runtime.PanicNilError (nil only under GODEBUG=panicnil=1).
	Value any
	// Stack is the stack of the panicking goroutine, as
	// runtime/debug.Stack formats it.
	Stack []byte

	frames []string // short form: the frames from the panic to the runtime's call
}

// Error gives the panic value and where it was raised: up to
// maxPanicFrames frames from the panic towards the runtime's call, the
// innermost first, each as function (directory/file:line). That is what a
// dead-letter entry and a stopped projection's last error record.
func (e *PanicError) Error() string {
	var b strings.Builder
	b.WriteString("panic: ")
	b.WriteString(panicText(e.Value))
	if len(e.frames) > 0 {
		b.WriteString(" [at ")
		b.WriteString(strings.Join(e.frames, " < "))
		b.WriteString("]")
	}
	return b.String()
}

// Unwrap returns the panic value when it is an error, so that errors.Is
// and errors.As see through the panic as through a returned error (a
// panic(Permanent(err)) skips the retries).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// panicText formats a panic value: an error or a Stringer by its text, a
// string as it is, anything else with its type (a bare {7} would not say
// what it was). fmt calls the value's methods, so that one that panics
// in turn gives a text saying so rather than a panic in the runtime.
func panicText(v any) string {
	switch v := v.(type) {
	case nil:
		return "nil"
	case string:
		return v
	case error, fmt.Stringer:
		return fmt.Sprint(v)
	default:
		return fmt.Sprintf("%#v", v)
	}
}

// maxPanicFrames bounds the short form of the stack in Error: enough to
// find the line that panicked and the code that led to it, without
// filling the dead-letter table with the runtime's own frames.
const maxPanicFrames = 8

// catch calls fn and turns a panic in it into a *PanicError. It is the
// only place the runtime recovers, and fn must be a closure around
// exactly one call of the projection's code (its frame is left out of the
// short form of the stack), so that a bug of the runtime's own still
// crashes where it is.
func catch(fn func() error) (err error) {
	returned := false
	defer func() {
		if returned {
			return
		}
		// recover returns nil under GODEBUG=panicnil=1 for panic(nil), or
		// during runtime.Goexit; in the latter case the goroutine goes on
		// exiting and err is never seen.
		v := recover()
		err = newPanicError(v)
	}()
	err = fn()
	returned = true
	return err
}

// newPanicError captures the stack; it must be called by the deferred
// function of catch, which the frames are counted from.
func newPanicError(v any) *PanicError {
	pcs := make([]uintptr, 128)
	n := runtime.Callers(2, pcs) // from catch's deferred function
	return &PanicError{Value: v, Stack: debug.Stack(), frames: userFrames(pcs[:n])}
}

// userFrames keeps the frames between the panic and the code catch
// called: after runtime.gopanic and the runtime frames that raised a
// runtime error (sigpanic, panicmem, …), up to the closure given to catch
// (excluded: it is the runtime's call of the user's code). catch's name
// is that of its deferred function, the first frame, without ".func1".
func userFrames(pcs []uintptr) []string {
	frames := runtime.CallersFrames(pcs)
	first, more := frames.Next()
	catchName := strings.TrimSuffix(first.Function, ".func1")
	var out []string
	inPanic, inUser := false, false
	for more {
		var f runtime.Frame
		f, more = frames.Next()
		switch {
		case !inPanic:
			inPanic = f.Function == "runtime.gopanic"
		case !inUser && strings.HasPrefix(f.Function, "runtime."):
		case f.Function == catchName:
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			return out[:min(len(out), maxPanicFrames)]
		default:
			inUser = true
			out = append(out, fmt.Sprintf("%s (%s:%d)", shortFunc(f.Function), shortFile(f.File), f.Line))
		}
	}
	return out[:min(len(out), maxPanicFrames)]
}

// shortFunc drops the import path before the package name.
func shortFunc(fn string) string {
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		return fn[i+1:]
	}
	return fn
}

// shortFile keeps the file's directory and name.
func shortFile(file string) string {
	dir, name := filepath.Split(file)
	return filepath.Join(filepath.Base(dir), name)
}
