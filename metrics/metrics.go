// Package metrics defines every Prometheus metric that `anvil serve` and
// `anvil signer` export at /metrics (except the HSM token counters, which
// cmd/anvil collects from the tokens, and the ledger rows), and the observers
// that feed them from the hooks the other packages declare (api.Observer,
// issuance.Observer). Decorators in cmd/anvil feed the rest.
//
// Names follow the Prometheus conventions: base units (seconds, bytes),
// counters end in _total, latencies are _seconds histograms. Every label has a
// bounded set of values: route templates, not paths; problem types from the
// fixed RFC 8555 list; issuer, profile, token and key names from the
// configuration. Never a serial, a subscriber's name, an account or an order.
//
// Nothing here decides anything: a metric that fails to record changes no
// outcome.
package metrics

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/anvil-pki/anvil/issuance"
)

// latencyBuckets span a sub-millisecond database read to a slow validation
// that waits out its timeouts.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics holds one process's metrics and the registry that exports them.
type Metrics struct {
	reg *prometheus.Registry

	HTTPRequests *prometheus.CounterVec   // route, method, status
	HTTPDuration *prometheus.HistogramVec // route, method
	Problems     *prometheus.CounterVec   // type

	OrdersCreated         prometheus.Counter
	OrderFinalizesStarted prometheus.Counter
	OrdersFinalized       *prometheus.CounterVec // outcome: valid, invalid, retry

	Validations        *prometheus.CounterVec   // challenge, outcome
	ValidationDuration *prometheus.HistogramVec // challenge
	CAAChecks          *prometheus.CounterVec   // outcome
	RateLimited        *prometheus.CounterVec   // limit

	Issuances        *prometheus.CounterVec   // issuer, profile, outcome
	IssuanceDuration *prometheus.HistogramVec // issuer, profile, outcome
	IssuancePhase    *prometheus.HistogramVec // phase, issuer
	HSMSignDuration  *prometheus.HistogramVec // token, key

	DBDuration *prometheus.HistogramVec // operation
	DBErrors   *prometheus.CounterVec   // operation

	SignerRequests *prometheus.CounterVec   // operation, outcome
	SignerDuration *prometheus.HistogramVec // operation

	OCSPResponses *prometheus.CounterVec // outcome

	state *stateCollector
	// names are the sample names a scrape can show, for Names.
	names []string
}

// New makes the metrics of one process, with the Go runtime and process
// collectors registered beside them.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "anvil_" + name, Help: help}, labels)
		m.reg.MustRegister(c)
		m.names = append(m.names, "anvil_"+name)
		return c
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "anvil_" + name, Help: help, Buckets: latencyBuckets}, labels)
		m.reg.MustRegister(h)
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			m.names = append(m.names, "anvil_"+name+suffix)
		}
		return h
	}
	m.HTTPRequests = counter("http_requests_total", "ACME HTTP requests by route template, method and status.", "route", "method", "status")
	m.HTTPDuration = histogram("http_request_duration_seconds", "Time to answer an ACME HTTP request.", "route", "method")
	m.Problems = counter("acme_problems_total", "RFC 8555 problem documents sent, by error type.", "type")

	m.OrdersCreated = counter("orders_created_total", "Orders created.").WithLabelValues()
	m.OrderFinalizesStarted = counter("order_finalizations_started_total", "Orders that moved from ready to processing: finalize accepted.").WithLabelValues()
	m.OrdersFinalized = counter("orders_finalized_total", "Processing orders that reached an outcome: valid (certificate issued), invalid, or retry (ready again).", "outcome")

	m.Validations = counter("validations_total", "Validation attempts by challenge type and outcome (valid, or the problem type).", "challenge", "outcome")
	m.ValidationDuration = histogram("validation_duration_seconds", "Time of one validation attempt.", "challenge")
	m.CAAChecks = counter("caa_checks_total", "CAA checks by outcome (allowed, or the problem type).", "outcome")
	m.RateLimited = counter("rate_limit_refusals_total", "Requests refused by a rate limit, by limit.", "limit")

	m.Issuances = counter("issuances_total", "Certificate issuances by issuer, profile and outcome.", "issuer", "profile", "outcome")
	m.IssuanceDuration = histogram("issuance_duration_seconds", "Time of one issuance, from the CSR check to the stored certificate.", "issuer", "profile", "outcome")
	m.IssuancePhase = histogram("issuance_phase_duration_seconds", "Time of the parts of an issuance: lint, hsm_sign, store.", "phase", "issuer")
	m.HSMSignDuration = histogram("hsm_sign_duration_seconds", "Time of one HSM signature, by token and key label.", "token", "key")

	m.DBDuration = histogram("db_operation_duration_seconds", "Time of one storage operation, by operation.", "operation")
	m.DBErrors = counter("db_operation_errors_total", "Storage operations that failed (not found and conflicts are answers, not errors).", "operation")

	m.SignerRequests = counter("signer_requests_total", "Calls of a front end to its remote signer, by operation and outcome.", "operation", "outcome")
	m.SignerDuration = histogram("signer_request_duration_seconds", "Time of one call to the remote signer, retries included.", "operation")

	m.OCSPResponses = counter("ocsp_responses_total", "OCSP responses by outcome: successful, or the OCSP error status.", "outcome")

	m.state = &stateCollector{}
	m.reg.MustRegister(m.state)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Names lists the names of the samples this package's metrics can show in a
// scrape (histograms as their _bucket, _sum and _count), for checking that
// alert rules and dashboards name only metrics that exist.
func (m *Metrics) Names() []string {
	out := slices.Clone(m.names)
	ch := make(chan *prometheus.Desc, 32)
	go func() { m.state.Describe(ch); close(ch) }()
	for d := range ch {
		// Desc has no accessor for its name; its String form starts with it.
		if _, rest, ok := strings.Cut(d.String(), `fqName: "`); ok {
			name, _, _ := strings.Cut(rest, `"`)
			out = append(out, name)
		}
	}
	return out
}

// Registry is where the process's collectors register; /metrics serves it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ProblemTypes are the RFC 8555 error types (section 6.7) and the ones of
// later ACME RFCs and drafts that Anvil sends; anything else counts as "other",
// so that the label stays bounded whatever a caller passes.
var ProblemTypes = []string{
	"accountDoesNotExist", "alreadyRevoked", "badCSR", "badNonce", "badPublicKey",
	"badRevocationReason", "badSignatureAlgorithm", "caa", "compound", "connection",
	"dns", "externalAccountRequired", "incorrectResponse", "invalidContact", "malformed",
	"orderNotReady", "rateLimited", "rejectedIdentifier", "serverInternal", "tls",
	"unauthorized", "unsupportedContact", "unsupportedIdentifier", "userActionRequired",
	"invalidProfile", "conflict", "methodNotAllowed", "notFound", "serviceUnavailable",
}

var problemSet = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range ProblemTypes {
		m[t] = true
	}
	return m
}()

// ProblemType reduces a problem type, with or without the ACME namespace, to
// a bounded label value.
func ProblemType(t string) string {
	t = strings.TrimPrefix(t, "urn:ietf:params:acme:error:")
	if problemSet[t] {
		return t
	}
	return "other"
}

// ObserveRequest implements api.Observer.
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration) {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH":
	default:
		method = "other"
	}
	m.HTTPRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.HTTPDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

// ObserveProblem implements api.Observer.
func (m *Metrics) ObserveProblem(typ string) {
	m.Problems.WithLabelValues(ProblemType(typ)).Inc()
}

// Issuance outcomes, the values of the outcome label of anvil_issuances_total.
const (
	OutcomeIssued            = "issued"
	OutcomeBadCSR            = "bad_csr"
	OutcomeRejectedName      = "rejected_name"
	OutcomeUnknownProfile    = "unknown_profile"
	OutcomeLintFailed        = "lint_failed"
	OutcomeSignerUnavailable = "signer_unavailable"
	OutcomeSignatureCheck    = "signature_check_failed"
	OutcomeLedgerError       = "ledger_error"
	OutcomeRequesterConflict = "requester_conflict"
	OutcomeUnknown           = "outcome_unknown"
	OutcomeError             = "error"
)

// IssuanceOutcome names what became of an issuance, from its error.
func IssuanceOutcome(err error) string {
	switch {
	case err == nil:
		return OutcomeIssued
	case errors.Is(err, issuance.ErrOutcomeUnknown):
		return OutcomeUnknown
	case errors.Is(err, issuance.ErrBadCSR), errors.Is(err, issuance.ErrBadPublicKey),
		errors.Is(err, issuance.ErrBadSignatureAlgorithm), errors.Is(err, issuance.ErrNamesMismatch):
		return OutcomeBadCSR
	case errors.Is(err, issuance.ErrRejectedName):
		return OutcomeRejectedName
	case errors.Is(err, issuance.ErrUnknownProfile):
		return OutcomeUnknownProfile
	case errors.Is(err, issuance.ErrLint):
		return OutcomeLintFailed
	case errors.Is(err, issuance.ErrSignerUnavailable):
		return OutcomeSignerUnavailable
	case errors.Is(err, issuance.ErrSignature):
		return OutcomeSignatureCheck
	case errors.Is(err, issuance.ErrLedger):
		return OutcomeLedgerError
	case errors.Is(err, issuance.ErrRequesterConflict):
		return OutcomeRequesterConflict
	}
	return OutcomeError
}

// IssuanceDone implements issuance.Observer.
func (m *Metrics) IssuanceDone(issuer, profile string, err error, d time.Duration) {
	if issuer == "" {
		issuer = "none"
	}
	if profile == "" {
		profile = "none"
	}
	outcome := IssuanceOutcome(err)
	m.Issuances.WithLabelValues(issuer, profile, outcome).Inc()
	m.IssuanceDuration.WithLabelValues(issuer, profile, outcome).Observe(d.Seconds())
}

// IssuancePhaseDone implements issuance.Observer.
func (m *Metrics) IssuancePhaseDone(phase, issuer string, d time.Duration) {
	m.IssuancePhase.WithLabelValues(phase, issuer).Observe(d.Seconds())
}
