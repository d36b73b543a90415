package metrics

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/anvil-pki/anvil/issuance"
)

// Label values stay within fixed sets whatever the caller passes.
func TestLabelsAreBounded(t *testing.T) {
	for in, want := range map[string]string{
		"urn:ietf:params:acme:error:badNonce":        "badNonce",
		"serverInternal":                             "serverInternal",
		"urn:ietf:params:acme:error:www.example.com": "other",
		"": "other",
	} {
		if got := ProblemType(in); got != want {
			t.Errorf("ProblemType(%q) = %q, want %q", in, got, want)
		}
	}
	m := New()
	m.ObserveRequest("/acme/new-order", "PROPFIND", 405, time.Millisecond)
	if got := counterValue(t, m, "anvil_http_requests_total", "other", "/acme/new-order", "405"); got != 1 {
		t.Fatalf("an unknown method counted as %v under method=other", got)
	}
}

func TestIssuanceOutcomes(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                   OutcomeIssued,
		fmt.Errorf("x: %w", issuance.ErrLint): OutcomeLintFailed,
		fmt.Errorf("%w: y", issuance.ErrBadPublicKey):                                   OutcomeBadCSR,
		fmt.Errorf("%w: z", issuance.ErrSignature):                                      OutcomeSignatureCheck,
		fmt.Errorf("%w: %w", issuance.ErrOutcomeUnknown, issuance.ErrSignerUnavailable): OutcomeUnknown,
		fmt.Errorf("%w", issuance.ErrSignerUnavailable):                                 OutcomeSignerUnavailable,
		errors.New("disk full"):                                                         OutcomeError,
	} {
		if got := IssuanceOutcome(err); got != want {
			t.Errorf("IssuanceOutcome(%v) = %q, want %q", err, got, want)
		}
	}
	m := New()
	m.IssuanceDone("", "default", issuance.ErrUnknownProfile, time.Millisecond)
	if got := counterValue(t, m, "anvil_issuances_total", "none", OutcomeUnknownProfile, "default"); got != 1 {
		t.Fatalf("a refusal before issuer and profile were chosen: %v", got)
	}
}

// Names lists the scrape-time gauges too, and every name is Anvil's.
func TestNames(t *testing.T) {
	names := New().Names()
	joined := strings.Join(names, " ")
	for _, want := range []string{"anvil_crl_next_update_seconds", "anvil_ca_certificate_not_after_seconds", "anvil_issuance_duration_seconds_bucket", "anvil_http_requests_total"} {
		if !strings.Contains(" "+joined+" ", " "+want+" ") {
			t.Errorf("Names lacks %s", want)
		}
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "anvil_") {
			t.Errorf("%s is not in the anvil_ namespace", n)
		}
	}
}

// counterValue reads a counter from a scrape of m: the sample whose label
// label values, in the order of the label names sorted, are values.
func counterValue(t *testing.T, m *Metrics, name string, values ...string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			var got []string
			for _, l := range s.GetLabel() {
				got = append(got, l.GetValue())
			}
			if strings.Join(got, "|") == strings.Join(values, "|") {
				return s.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no sample %s%v", name, values)
	return 0
}

// The cost of the hooks on the hot paths: one request observed, one
// database operation timed.
func BenchmarkObserveRequest(b *testing.B) {
	m := New()
	for i := 0; i < b.N; i++ {
		m.ObserveRequest("/acme/order/{id}/finalize", "POST", 200, time.Millisecond)
	}
}

func BenchmarkObserveDBOperation(b *testing.B) {
	m := New()
	for i := 0; i < b.N; i++ {
		m.DBDuration.WithLabelValues("UpdateOrder").Observe(0.001)
	}
}
