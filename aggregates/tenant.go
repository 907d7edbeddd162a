package aggregates

import "errors"

// ForTenant is what a module whose aggregates each belong to one tenant
// returns to tenant for a command that Handle answered with res and err.
// owner returns the tenant an aggregate's state belongs to ("" when it has
// none yet); refusal is the module's tenant rule, as its decider refuses
// another tenant's command with it.
//
// When the command failed on an aggregate of another tenant, whatever the
// failure, the caller gets an empty result and refusal (naming the
// aggregate it named itself): the decider's tenant check does not cover
// every failure Handle can return. A command id that landed on the
// aggregate, sent again by another tenant, is a *CommandReusedError that
// names the version where it landed, with the aggregate as loaded. The
// refusal itself also comes with an empty result, since a refused
// command's result carries the aggregate as loaded (and the events a
// recorded refusal wrote). Anything else is returned as it is.
func ForTenant[S any](tenant string, owner func(S) string, refusal *RuleError, res Result[S], err error) (Result[S], error) {
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, refusal):
		return Result[S]{}, err
	}
	if a := res.Aggregate; a != nil {
		if o := owner(a.State); o != "" && o != tenant {
			re := *refusal
			re.Aggregate, re.ID = a.Name, a.ID
			return Result[S]{}, &re
		}
	}
	return res, err
}
