// Package bench is eventstream's load generator, usable as a library and
// run by `eventstream bench`.
//
// Run executes one named scenario (single, batch, hot, project, replay,
// read; see Scenarios) against PostgreSQL and returns a Report. What it
// promises:
//
//   - The ceiling in the same run: every scenario also runs its raw
//     equivalent with plain pgx on a bare table of the same rows, and the
//     report gives ours / raw as Ratio. Absolute figures vary between
//     machines; the ratio is the figure to track.
//   - It cannot lie: before a figure is reported, the log is checked to
//     hold every event the run says it appended exactly once (count, ids,
//     each in the stream it was appended to, gapless positions, each
//     stream's versions 1..n). Otherwise Run
//     returns a *VerifyError (errors.Is(err, ErrVerify)).
//   - Real events: payloads of the domain's types under schemas/, built to
//     pass their schemas, written through the store's validation.
//   - Nothing left behind: each run creates its own schema and drops it
//     (with the projection generations beside it) at the end, unless
//     Config.Keep.
//   - Honest latencies: HDR histograms per writer; in paced runs latency
//     counts from the scheduled start, so a stall is not hidden by fewer
//     requests.
//
// WriteTable, WriteJSON, WriteMarkdown and WriteHTML (inline SVG charts, no
// script) render reports. bench/README.md describes each scenario, how to
// run it, the machine and the latest figures.
package bench
