//go:build !unix

package cli

import (
	"context"
	"io"
)

// watchReader does nothing where poll(2) is not available: the reader's
// going away shows on the next write.
func watchReader(context.Context, io.Writer, func()) {}
