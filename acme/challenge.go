package acme

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/anvil-pki/anvil/audit"
	"github.com/anvil-pki/anvil/storage"
)

// Challenge returns a challenge and its authorization, checking ownership.
func (ca *Core) Challenge(ctx context.Context, acct *storage.Account, id string) (*storage.Challenge, *storage.Authorization, error) {
	ch, err := ca.store.GetChallenge(ctx, id)
	if err != nil {
		return nil, nil, storeErr(err, "challenge")
	}
	authz, err := ca.Authorization(ctx, acct, ch.AuthzID)
	if err != nil {
		return nil, nil, err
	}
	return ch, authz, nil
}

// RespondChallenge is the client saying a challenge is ready (RFC 8555 7.5.1).
// The challenge moves to processing and is validated; if validation finishes
// within Config.InlineValidation the answer already says valid or invalid, so
// that clients need not poll. A challenge that is processing or valid is
// returned as it is, which makes the request idempotent; one that is invalid,
// or under an authorization that is, is refused.
func (ca *Core) RespondChallenge(ctx context.Context, acct *storage.Account, id string) (*storage.Challenge, *storage.Authorization, error) {
	ch, authz, err := ca.Challenge(ctx, acct, id)
	if err != nil {
		return nil, nil, err
	}
	// RFC 8555 7.1.6: invalid is a final state, of a challenge and of its
	// authorization. Answering again is a client error, not a new attempt,
	// and nothing may become valid through it.
	if ch.Status == StatusInvalid {
		return nil, nil, Malformed("challenge %s is invalid, a final state: create a new order to try again", ch.ID)
	}
	if ch.Status == StatusPending && authz.Status != StatusPending && authz.Status != StatusValid {
		return nil, nil, Malformed("the authorization of challenge %s is %s, a final state: create a new order to try again", ch.ID, authz.Status)
	}
	if ch.Status != StatusPending || authz.Status != StatusPending {
		return ch, authz, nil
	}
	if !ca.challengeEnabled(ch.Type) {
		return nil, nil, Malformed("challenge type %s is not enabled", ch.Type)
	}
	now := ca.now()
	ch.Status = StatusProcessing
	ch.Attempts = 0
	ch.NextAttempt = now
	ch.LeaseUntil = now.Add(ca.cfg.ValidationLease)
	ch.UpdatedAt = now
	if err := ca.store.UpdateChallenge(ctx, ch, StatusPending); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			// A concurrent response won; report the challenge as it now is.
			return ca.Challenge(ctx, acct, id)
		}
		return nil, nil, ServerInternal(err, "storage error starting validation")
	}
	done := ca.startValidation(ch, authz, acct)
	if ca.cfg.InlineValidation > 0 {
		t := time.NewTimer(ca.cfg.InlineValidation)
		defer t.Stop()
		select {
		case r := <-done:
			if r.err == nil {
				return r.ch, r.authz, nil
			}
			return ca.Challenge(ctx, acct, id)
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return ch, authz, nil
}

// validationResult is a challenge and its authorization as a validation left
// them.
type validationResult struct {
	ch    *storage.Challenge
	authz *storage.Authorization
	err   error
}

// startValidation validates a challenge this node holds the lease of, in the
// background. authz and acct may be nil (a claimed retry); they are read then.
// The returned channel receives the recorded outcome.
func (ca *Core) startValidation(ch *storage.Challenge, authz *storage.Authorization, acct *storage.Account) <-chan validationResult {
	done := make(chan validationResult, 1)
	chCopy := *ch
	ca.wg.Add(1)
	go func() {
		defer ca.wg.Done()
		ca.validations <- struct{}{}
		defer func() { <-ca.validations }()
		ctx, cancel := context.WithTimeout(context.Background(), ca.cfg.ValidationLease)
		defer cancel()
		r := ca.validate(ctx, &chCopy, authz, acct)
		if r.err != nil {
			ca.log.Error("validation not recorded", "challenge", ch.ID, "error", r.err)
		}
		done <- r
	}()
	return done
}

// validate makes one validation attempt and records its outcome: valid, a retry
// later, or invalid.
func (ca *Core) validate(ctx context.Context, ch *storage.Challenge, authz *storage.Authorization, acct *storage.Account) validationResult {
	var err error
	if authz == nil {
		if authz, err = ca.store.GetAuthorization(ctx, ch.AuthzID); err != nil {
			return validationResult{err: err}
		}
	}
	if acct == nil {
		if acct, err = ca.store.GetAccount(ctx, authz.AccountID); err != nil {
			return validationResult{err: err}
		}
	}
	a := *authz // a copy: the caller's may be shared
	authz = &a
	keyAuth := ch.Token + "." + acct.KeyID
	// CAA is looked up while the challenge is checked, as Boulder's VA does:
	// the outcome is the same (a failed challenge wins over CAA), in the time
	// of the longer of the two rather than their sum, and the server waits
	// idle once instead of twice.
	var caaErr error
	caaDone := make(chan struct{})
	checkCAA := ca.cfg.CAA && authz.Identifier.Type == "dns"
	if checkCAA {
		go func() {
			defer close(caaDone)
			caaErr = ca.validator.CheckCAA(ctx, authz.Identifier.Value, authz.Wildcard, ca.cfg.AccountURL(acct.ID), ch.Type)
		}()
	}
	var contacted []string
	var verr error
	if cr, ok := ca.validator.(ContactReporter); ok {
		contacted, verr = cr.ValidateContacted(ctx, authz.Identifier, ch.Type, ch.Token, keyAuth)
	} else {
		verr = ca.validator.Validate(ctx, authz.Identifier, ch.Type, ch.Token, keyAuth)
	}
	if checkCAA {
		<-caaDone
		if verr == nil {
			verr = caaErr
		}
	}
	now := ca.now()
	ch.Attempts++
	ch.LeaseUntil = time.Time{}
	ch.UpdatedAt = now
	if verr == nil {
		ch.Status = StatusValid
		ch.Validated = now
		ch.Error = nil
		authz.Status = StatusValid
		authz.Expires = now.Add(ca.cfg.ValidAuthzLifetime)
		authz.UpdatedAt = now
		authz.Challenges = replaceChallenge(authz.Challenges, ch)
		if err := ca.recordOutcome(ctx, ch, authz); err != nil {
			return validationResult{err: err}
		}
		ca.log.Info("challenge valid", "audit", "validation", "account", acct.ID, "identifier", authz.Identifier.Value,
			"type", ch.Type, "attempt", ch.Attempts)
		if err := ca.record(ctx, audit.AuthzValid, validationEvent(acct, authz, ch, contacted, nil)); err != nil {
			return validationResult{err: err}
		}
		return validationResult{ch: ch, authz: authz}
	}

	var ve *ValidationError
	if !errors.As(verr, &ve) {
		ve = &ValidationError{Type: "serverInternal", Detail: "validation failed unexpectedly"}
		ca.log.Error("validation error", "challenge", ch.ID, "error", verr)
	}
	ch.Error = problemJSON(validationProblem(ve))
	if ve.Retryable() && ch.Attempts < ca.cfg.ValidationAttempts {
		ch.NextAttempt = now.Add(ca.cfg.RetryBackoff << (ch.Attempts - 1))
		ca.log.Info("validation will be retried", "challenge", ch.ID, "identifier", authz.Identifier.Value,
			"attempt", ch.Attempts, "error", ve.Error(), "next", ch.NextAttempt)
		if err := ca.store.UpdateChallenge(ctx, ch, StatusProcessing); err != nil {
			return validationResult{err: err}
		}
		authz.Challenges = replaceChallenge(authz.Challenges, ch)
		return validationResult{ch: ch, authz: authz}
	}
	ch.Status = StatusInvalid
	authz.Status = StatusInvalid
	authz.UpdatedAt = now
	authz.Challenges = replaceChallenge(authz.Challenges, ch)
	if err := ca.recordOutcome(ctx, ch, authz); err != nil {
		return validationResult{err: err}
	}
	ca.log.Info("challenge invalid", "audit", "validation", "account", acct.ID, "identifier", authz.Identifier.Value,
		"type", ch.Type, "attempts", ch.Attempts, "error", ve.Error())
	if err := ca.record(ctx, audit.AuthzInvalid, validationEvent(acct, authz, ch, contacted, ve)); err != nil {
		return validationResult{err: err}
	}
	return validationResult{ch: ch, authz: authz}
}

// validationEvent is the audit record of a validation's final outcome, with
// the addresses its last attempt contacted when the validator reports them.
func validationEvent(acct *storage.Account, authz *storage.Authorization, ch *storage.Challenge, contacted []string, ve *ValidationError) map[string]any {
	ev := map[string]any{
		"account": acct.ID, "authorization": authz.ID, "challenge": ch.Type,
		"identifier": authz.Identifier.Type + ":" + authz.Identifier.Value, "wildcard": authz.Wildcard, "attempts": ch.Attempts,
		"contacted": contacted,
	}
	if ve != nil {
		ev["problem"] = ProblemNS + ve.Type
		ev["detail"] = ve.Detail
	}
	return ev
}

// recordOutcome writes a final outcome: the challenge from processing and its
// authorization from pending, together, so that no failure between two writes
// can leave a valid challenge under an authorization stuck pending. If the
// authorization moved on meanwhile (deactivated, expired) the challenge is
// still recorded alone, so that no node claims it again; the conflict is
// returned and the caller reads what is stored.
func (ca *Core) recordOutcome(ctx context.Context, ch *storage.Challenge, authz *storage.Authorization) error {
	err := ca.store.RecordValidation(ctx, ch, StatusProcessing, authz, StatusPending)
	if !errors.Is(err, storage.ErrConflict) {
		return err
	}
	// An authorization that became invalid meanwhile (another of its
	// challenges failed) is final (RFC 8555 7.1.6): a challenge of it that
	// passes afterwards is not recorded valid.
	if cur, gerr := ca.store.GetAuthorization(ctx, authz.ID); gerr == nil && cur.Status == StatusInvalid && ch.Status == StatusValid {
		ch.Status, ch.Validated = StatusInvalid, time.Time{}
		ch.Error = problemJSON(Malformed("the authorization became invalid while this challenge was validated"))
	}
	if cerr := ca.store.UpdateChallenge(ctx, ch, StatusProcessing); cerr != nil {
		// Another node recorded the challenge: its record stands.
		return cerr
	}
	return err
}

// replaceChallenge returns a copy of chs with the challenge of c's ID replaced.
func replaceChallenge(chs []*storage.Challenge, c *storage.Challenge) []*storage.Challenge {
	out := make([]*storage.Challenge, len(chs))
	for i, x := range chs {
		if x.ID == c.ID {
			x = c
		}
		out[i] = x
	}
	return out
}

// validationProblem turns a validation failure into the problem stored on the
// challenge.
func validationProblem(ve *ValidationError) *Problem {
	return &Problem{Type: ProblemNS + ve.Type, Detail: ve.Detail}
}

// problemJSON encodes a problem for storage.
func problemJSON(p *Problem) []byte {
	b, _ := json.Marshal(p)
	return b
}
