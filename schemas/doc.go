// Package schemas holds the versioned JSON Schemas (2020-12) of every event
// type, one file per type and version (<type>/v<N>.json), and the schema of
// the envelope itself (envelope/v1.json). They are embedded into the binary
// and compiled once into a Registry with santhosh-tekuri/jsonschema/v5.
//
// Adding a type or a version is adding a file: the registry discovers
// types from the folder names and needs no code change.
//
// Validation asks a checker built from each compiled schema first: plain
// Go that builds no errors or instance paths. On the way to "valid" it
// allocates only for format checks (the value is passed to jsonschema/v5's
// format function), uniqueItems (a set of the items) and numbers it
// compares as big.Rat (a number or bound that is not a plain int64, an enum
// value spelled differently). Whatever it does not accept is decided by
// jsonschema/v5, whose verdict and error stand. The checker never accepts
// what jsonschema/v5 refuses: see checker.go and CrossCheckEnv.
package schemas
