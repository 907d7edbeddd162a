package cli

import (
	"bufio"
	"errors"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/brainhq/eventstream/internal/analysts"
)

// tenantsCommand is "eventstream tenants": analyst access to the read
// models of one tenant, enforced by PostgreSQL row-level security
// (internal/analysts). Written by the reliability helper (issue 8).
func (a *app) tenantsCommand() *cobra.Command {
	cmd := asGroup(&cobra.Command{
		Use:   "tenants",
		Short: "Give PostgreSQL roles read access to one tenant's read models",
		Long: `Analysts query the read models in PostgreSQL directly. grant-analyst makes a
role that reads the read-model views of one tenant only: row-level security
on every read-model table with a tenant_id shows it that tenant's rows, and
it has no access to the log, the projections' own tables (dead letters hold
every tenant's payloads) or the API tokens. New generations of a read model
(replay) are protected and granted when they are published.

Superusers, BYPASSRLS roles, the read models' owner and roles that can
become it are refused: row-level security cannot bind them.`,
	})
	var passwordStdin, noLogin bool
	var passwordFile string
	grant := &cobra.Command{
		Use:   "grant-analyst TENANT ROLE [--password-stdin | --password-file FILE] [--no-login]",
		Short: "Create or update ROLE so that it reads TENANT's read-model rows and nothing else",
		Long: `Create ROLE (LOGIN, unless --no-login) or update it, map it to TENANT, enable
row-level security on the read-model tables and grant it SELECT on their
views. Running it again for the same ROLE with another TENANT moves the role
to that tenant. The password, if given, is read from stdin or a file (never
from a flag, which would land in the shell history) and sent to PostgreSQL
as a SCRAM-SHA-256 verifier, so the clear text reaches neither the server
nor its logs.`,
		Args: argsExactly(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.writes = true
			tenant, role := args[0], args[1]
			if err := analysts.CheckTenant(tenant); err != nil {
				return refusal(err)
			}
			if err := analysts.CheckRole(role); err != nil {
				return refusal(err)
			}
			var opts analysts.Options
			opts.NoLogin = noLogin
			switch {
			case passwordStdin && passwordFile != "":
				return usagef("give --password-stdin or --password-file, not both")
			case passwordStdin:
				line, err := bufio.NewReader(a.io.In).ReadString('\n')
				if err != nil && line == "" {
					return usagef("--password-stdin: no password on stdin")
				}
				opts.Password = strings.TrimRight(line, "\r\n")
			case passwordFile != "":
				b, err := os.ReadFile(passwordFile)
				if err != nil {
					return usagef("--password-file %s: %v", passwordFile, errors.Unwrap(err))
				}
				opts.Password = strings.TrimRight(string(b), "\r\n")
			}
			// An empty Password means "no password" to analysts.Grant: a
			// flag that read nothing must not silently make a LOGIN role
			// without the password that was asked for.
			if (passwordStdin || passwordFile != "") && opts.Password == "" {
				return usagef("password: empty; want 8 to 1,024 characters of printable ASCII without spaces")
			}
			db, err := a.openDB(cmd.Context(), connectOptions{appName: "eventstream-tenants"})
			if err != nil {
				return err
			}
			defer db.Close()
			res, err := analysts.Grant(cmd.Context(), db.Pool, tenant, role, opts)
			if errors.Is(err, analysts.ErrRefused) {
				return refusal(err)
			}
			if err != nil {
				return err
			}
			if a.asJSON {
				return a.printJSON(res)
			}
			verb := "updated"
			if res.Created {
				verb = "created"
			}
			a.stdoutf("role %s %s: reads tenant %s's rows of %d read-model views (%s)\n", role, verb, tenant, len(res.Tables), strings.Join(res.Tables, ", "))
			return nil
		},
	}
	gf := grant.Flags()
	gf.BoolVar(&passwordStdin, "password-stdin", false, "read the role's password from the first line of stdin")
	gf.StringVar(&passwordFile, "password-file", "", "read the role's password from this file")
	gf.BoolVar(&noLogin, "no-login", false, "make a NOLOGIN (group) role; its members read as it")

	revoke := &cobra.Command{
		Use:   "revoke-analyst ROLE",
		Short: "Take an analyst role's access to the read models away (the role stays)",
		Args:  argsExactly(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a.writes = true
			db, err := a.openDB(cmd.Context(), connectOptions{appName: "eventstream-tenants"})
			if err != nil {
				return err
			}
			defer db.Close()
			err = analysts.Revoke(cmd.Context(), db.Pool, args[0])
			if errors.Is(err, analysts.ErrRefused) {
				return refusal(err)
			}
			if err != nil {
				return err
			}
			if a.asJSON {
				return a.printJSON(map[string]any{"role": args[0], "revoked": true})
			}
			a.stdoutf("role %s no longer reads the read models\n", args[0])
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "analysts",
		Short: "List analyst roles and their tenants",
		Args:  argsExactly(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := a.openDB(cmd.Context(), connectOptions{appName: "eventstream-tenants"})
			if err != nil {
				return err
			}
			defer db.Close()
			as, err := analysts.List(cmd.Context(), db.Pool)
			if err != nil {
				return err
			}
			if a.asJSON {
				if as == nil {
					as = []analysts.Analyst{}
				}
				return a.printJSON(as)
			}
			t := a.newTable("ROLE", "TENANT")
			for _, x := range as {
				t.row(x.Role, x.Tenant)
			}
			return t.flush()
		},
	}
	cmd.AddCommand(grant, revoke, list)
	return cmd
}

// refusal is analysts' refusal as a usage error (exit 2), worded without
// the prefix of analysts.ErrRefused.
func refusal(err error) error {
	return usagef("%s", strings.TrimPrefix(err.Error(), analysts.ErrRefused.Error()+": "))
}
