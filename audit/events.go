package audit

import "context"

// Event is one security-relevant thing that happened. Type is one of the
// constants below (or a new dotted name); Data holds its details, encoded as a
// JSON object with sorted keys. Data must never hold a private key, a PIN or
// an EAB MAC key.
type Event struct {
	Type string
	Data map[string]any
}

// Recorder records events; *Log is one. Packages that record events declare
// the same one-method interface where they use it, so that they depend on the
// Event type only, never on the log.
type Recorder interface {
	Record(ctx context.Context, ev Event) error
}

// Discard records nothing: the default where no audit log is configured.
var Discard Recorder = discard{}

type discard struct{}

func (discard) Record(context.Context, Event) error { return nil }

// Event types. The names are part of the log's format: add, never rename.
const (
	// TypeCheckpoint is written by the log itself: the chain head signed in
	// the HSM, at start, at intervals and at shutdown.
	TypeCheckpoint = "audit.checkpoint"

	AccountCreated     = "account.created"
	AccountKeyChanged  = "account.key_changed"
	AccountDeactivated = "account.deactivated"
	// AuthzValid and AuthzInvalid are the final outcome of a validation.
	AuthzValid        = "authorization.valid"
	AuthzInvalid      = "authorization.invalid"
	OrderFinalized    = "order.finalized"
	CertIssued        = "certificate.issued"
	CertRevoked       = "certificate.revoked"
	EABKeyCreated     = "eab.created"
	EABKeyRevoked     = "eab.revoked"
	CRLPublished      = "crl.published"
	ConfigLoaded      = "config.loaded"
	AdminCommand      = "admin.command"
	LedgerOutcome     = "ledger.outcome"
	HSMTokenDown      = "hsm.token_down"
	HSMTokenRecovered = "hsm.token_recovered"
	HSMLoginRefused   = "hsm.login_refused"
	HSMSignatureBad   = "hsm.signature_check_failed"
)

// Checkpoint reasons.
const (
	ReasonStart    = "start"
	ReasonInterval = "interval"
	ReasonShutdown = "shutdown"
)

// Async hands ev to r without waiting where r can queue it (a *Log: see
// RecordAsync), and records it at once otherwise. HSM hooks use it: they may
// fire inside the audit key's own Sign.
func Async(r Recorder, ev Event) {
	if a, ok := r.(interface{ RecordAsync(Event) }); ok {
		a.RecordAsync(ev)
		return
	}
	r.Record(context.Background(), ev)
}
