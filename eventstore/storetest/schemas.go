package storetest

import (
	"embed"
	"io/fs"

	"github.com/brainhq/eventstream/schemas"
)

//go:embed schemas/*/*.json
var schemaFiles embed.FS

// Event types of the suite's own schema set.
const (
	// TypeAdded has one schema version; its payload needs "name".
	TypeAdded = "storetest.item.added"
	// TypeRenamed has two: v1 needs "name", v2 needs "name" and "reason".
	TypeRenamed = "storetest.item.renamed"
)

// Schemas returns the suite's schema files laid out as schemas.Load expects
// (<type>/v<N>.json). It has no envelope schema: load it after
// schemas.Embedded().
func Schemas() fs.FS {
	sub, err := fs.Sub(schemaFiles, "schemas")
	if err != nil {
		// The directory is embedded at compile time; fs.Sub cannot fail on it.
		panic(err)
	}
	return sub
}

// Registry compiles the shipped schemas plus the suite's own.
func Registry() (*schemas.Registry, error) {
	return schemas.Load(schemas.Embedded(), Schemas())
}
