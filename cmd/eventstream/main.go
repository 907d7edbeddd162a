// Command eventstream is the operator's and analyst's tool for an
// eventstream store: migrate, append, read, tail, export/import, schemas,
// projections, replay, backfill, dead letters, the HTTP server and the
// demo. Run "eventstream --help" for the commands and exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/brainhq/eventstream/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
