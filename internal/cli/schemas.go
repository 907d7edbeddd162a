package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/aggregates/domain"
	"github.com/brainhq/eventstream/eventstore"
	"github.com/brainhq/eventstream/schemas"
	"github.com/brainhq/eventstream/schemas/catalog"
)

func (a *app) schemasCommand() *cobra.Command {
	var dir string
	cmd := asGroup(&cobra.Command{
		Use:   "schemas",
		Short: "List, check and document the event schemas",
		Long: `The event schemas: schemas/<type>/v<N>.json (JSON Schema 2020-12), embedded
in the binary. --dir reads them from a folder instead (to check edits
before building).`,
	})
	cmd.PersistentFlags().StringVar(&dir, "dir", "", "read schemas from this folder instead of the embedded ones")
	load := func() (*schemas.Registry, error) {
		if dir == "" {
			return schemas.Default()
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, usagef("--dir %s: not a folder", dir)
		}
		reg, err := schemas.Load(os.DirFS(dir))
		if err != nil {
			return nil, withCode(ExitInvalid, err)
		}
		return reg, nil
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List event types, their schema versions and titles",
		Args:  argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := load()
			if err != nil {
				return err
			}
			type row struct {
				Type     string `json:"type"`
				Versions []int  `json:"versions"`
				Latest   int    `json:"latest"`
				Title    string `json:"title"`
			}
			var rows []row
			for _, t := range reg.Types() {
				src, _ := reg.Source(t, reg.Latest(t))
				var doc struct {
					Title string `json:"title"`
				}
				_ = json.Unmarshal(src, &doc)
				rows = append(rows, row{Type: t, Versions: reg.Versions(t), Latest: reg.Latest(t), Title: doc.Title})
			}
			if a.asJSON {
				return a.printJSON(rows)
			}
			t := a.newTable("TYPE", "VERSIONS", "TITLE")
			for _, r := range rows {
				vs := make([]string, len(r.Versions))
				for i, v := range r.Versions {
					vs[i] = "v" + strconv.Itoa(v)
				}
				t.row(r.Type, strings.Join(vs, ","), r.Title)
			}
			return t.flush()
		},
	}

	validate := &cobra.Command{
		Use:   "validate TYPE VERSION FILE|-",
		Short: "Check a payload against a type's schema (exit 3 if it breaks it)",
		Args:  argsExactly(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			version, err := strconv.Atoi(strings.TrimPrefix(args[1], "v"))
			if err != nil || version < 1 {
				return usagef("VERSION %q: want a schema version such as 1 or v2", args[1])
			}
			reg, err := load()
			if err != nil {
				return err
			}
			var raw []byte
			if args[2] == "-" {
				raw, err = io.ReadAll(io.LimitReader(a.io.In, eventstore.MaxEventBytes+1))
			} else {
				raw, err = os.ReadFile(args[2])
				if err != nil {
					return usagef("%s: %v", args[2], errors.Unwrap(err))
				}
			}
			if err != nil {
				return err
			}
			return a.validatePayload(reg, args[0], version, bytes.TrimSpace(raw))
		},
	}

	lint := &cobra.Command{
		Use:   "lint",
		Short: "Check that schemas compile, match the Go event types, and have no version holes",
		Long: `Check that every schema compiles, that versions of each type run 1, 2, 3…
without holes, that every registered Go event type has a schema at its
newest version (with upcasters from older ones) and every domain schema a
Go type, and, when ./docs/events.md exists, that the event catalog is up to
date. Exit code 3 when a check fails.`,
		Args: argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.lintSchemas(load)
		},
	}

	var output string
	docs := &cobra.Command{
		Use:   "docs",
		Short: "Regenerate the event catalog (docs/events.md) from the schemas",
		Long: `Regenerate the event catalog (docs/events.md, or -o FILE; - for stdout)
from the schemas, and print whether FILE was updated or unchanged (--json:
{"file", "types", "state"}); nothing when FILE is where stdout goes
(-o /dev/stdout, also redirected to a file), where the catalog is the
output, written as the shell opened it (>> FILE appends it).`,
		Args: argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := load()
			if err != nil {
				return err
			}
			b, err := catalog.Generate(reg)
			if err != nil {
				return err
			}
			if output == "-" {
				_, err = a.io.Out.Write(b)
				return err
			}
			path := output
			if !filepath.IsAbs(path) {
				path = filepath.Join(a.workDir, path)
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			// FILE is read for what it held only when it is a regular
			// file: read, /dev/stdout to a pipe or a terminal waited for
			// input that never came.
			var old []byte
			fi, statErr := os.Stat(path)
			if statErr == nil && a.stdoutIs(fi) {
				// -o /dev/stdout (> FILE): the catalog is the output, as
				// with -o -, written through stdout as the shell opened
				// it: opened again (O_TRUNC), >> FILE lost what FILE
				// held. A result printed to stdout would be written into
				// the catalog, so there is none.
				_, err = a.io.Out.Write(b)
				return err
			}
			if statErr == nil && fi.Mode().IsRegular() {
				old, _ = os.ReadFile(path)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				return err
			}
			state := "unchanged"
			if !bytes.Equal(old, b) {
				state = "updated"
			}
			if a.asJSON {
				return a.printJSON(map[string]any{"file": output, "types": len(reg.Types()), "state": state})
			}
			a.stdoutf("%s %s (%d event types)\n", state, output, len(reg.Types()))
			return nil
		},
	}
	docs.Flags().StringVarP(&output, "output", "o", filepath.Join("docs", "events.md"), "file to write (- for stdout)")

	cmd.AddCommand(list, validate, lint, docs)
	return cmd
}

func (a *app) validatePayload(reg *schemas.Registry, typ string, version int, raw []byte) error {
	refuse := func(ptr, rule, msg string, causes []eventstore.Violation) error {
		return &eventstore.ValidationError{Index: -1, Type: typ, SchemaVersion: version, Pointer: ptr, Rule: rule, Message: msg, Causes: causes}
	}
	if err := eventstore.CheckTypeName(typ); err != nil {
		return err
	}
	doc, err := eventstore.DecodeJSON(raw)
	if err != nil {
		var je *eventstore.JSONError
		if errors.As(err, &je) {
			return refuse("/payload", je.Rule, je.Message, nil)
		}
		return refuse("/payload", "json", err.Error(), nil)
	}
	if _, ok := doc.(map[string]any); !ok {
		return refuse("/payload", "type", "the payload must be a JSON object", nil)
	}
	err = reg.Validate(typ, version, doc)
	var inv *schemas.Invalid
	switch {
	case err == nil:
		if a.asJSON {
			return a.printJSON(map[string]any{"type": typ, "schema_version": version, "valid": true})
		}
		a.stdoutf("valid: %s v%d\n", typ, version)
		return nil
	case errors.Is(err, schemas.ErrUnknownType):
		return refuse("/type", "unknown-type", fmt.Sprintf("no schema for type %q", typ), nil)
	case errors.Is(err, schemas.ErrUnknownVersion):
		return refuse("/meta/schema_version", "unknown-version", fmt.Sprintf("%s has no schema v%d (known: %v)", typ, version, reg.Versions(typ)), nil)
	case errors.As(err, &inv) && len(inv.Violations) > 0:
		first := inv.Violations[0]
		var rest []eventstore.Violation
		for _, v := range inv.Violations[1:] {
			rest = append(rest, eventstore.Violation{Pointer: "/payload" + v.Pointer, Rule: v.Rule, Message: v.Message})
		}
		ptr := "/payload" + first.Pointer
		if first.Pointer == "/" {
			ptr = "/payload"
		}
		return refuse(ptr, first.Rule, first.Message, rest)
	}
	return err
}

// lintCheck is one line of the lint report.
type lintCheck struct {
	Check    string   `json:"check"`
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
}

func (a *app) lintSchemas(load func() (*schemas.Registry, error)) error {
	var checks []lintCheck
	add := func(name string, err error) {
		c := lintCheck{Check: name, OK: err == nil}
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if line = strings.TrimSpace(line); line != "" {
					c.Problems = append(c.Problems, line)
				}
			}
		}
		checks = append(checks, c)
	}
	reg, err := load()
	var ue *usageError
	if errors.As(err, &ue) {
		return err
	}
	add("every schema compiles; versions have no holes", err)
	if reg != nil {
		_, err = domain.NewRegistry(reg)
		add("every Go event type has a schema, every schema a Go type", err)
		path := filepath.Join(a.workDir, "docs", "events.md")
		if old, rerr := os.ReadFile(path); rerr == nil {
			b, gerr := catalog.Generate(reg)
			if gerr == nil && !bytes.Equal(old, b) {
				gerr = errors.New("docs/events.md is out of date: run `eventstream schemas docs`")
			}
			add("docs/events.md matches the schemas", gerr)
		}
	}
	failed := 0
	for _, c := range checks {
		if !c.OK {
			failed++
		}
	}
	if a.asJSON {
		if err := a.printJSON(checks); err != nil {
			return err
		}
	} else {
		for _, c := range checks {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			a.stdoutf("%s  %s\n", mark, c.Check)
			for _, p := range c.Problems {
				a.stdoutf("        %s\n", p)
			}
		}
	}
	if failed > 0 {
		if !a.asJSON {
			a.stderrf("schemas lint: %d of %d checks failed\n", failed, len(checks))
		}
		return &silentError{code: ExitInvalid}
	}
	return nil
}
