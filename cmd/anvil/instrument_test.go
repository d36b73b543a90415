package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/acme"
	"github.com/anvil-pki/anvil/issuance"
	"github.com/anvil-pki/anvil/metrics"
)

type fakeIssuer struct {
	acme.Issuer
	err error
}

func (f fakeIssuer) Issue(context.Context, issuance.Request) (*issuance.Issued, error) {
	return nil, f.err
}

type fakeValidator struct{ err error }

func (f fakeValidator) Validate(context.Context, acme.Identifier, string, string, string) error {
	return f.err
}
func (f fakeValidator) CheckCAA(context.Context, string, bool, string, string) error { return f.err }

// sampleValue reads one sample of a scrape: name{labels} as the text format
// writes it, labels in name order.
func sampleValue(t *testing.T, m *metrics.Metrics, name, labels string) string {
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
			var ls []string
			for _, l := range s.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if strings.Join(ls, ",") != labels {
				continue
			}
			switch {
			case s.GetCounter() != nil:
				return fmt.Sprint(s.GetCounter().GetValue())
			case s.GetHistogram() != nil:
				return fmt.Sprint(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return "absent"
}

// A signer that does not answer counts as signer_unavailable, one whose
// answer is lost as outcome_unknown; each call is timed.
func TestSignerHopOutcomes(t *testing.T) {
	m := metrics.New()
	for _, err := range []error{
		fmt.Errorf("dial: %w", issuance.ErrSignerUnavailable),
		fmt.Errorf("%w: %w", issuance.ErrOutcomeUnknown, issuance.ErrSignerUnavailable),
		fmt.Errorf("%w: the signer's answer", issuance.ErrSignature),
	} {
		s := instrumentedSigner{fakeIssuer{err: err}, m}
		if _, got := s.Issue(context.Background(), issuance.Request{}); !errors.Is(got, err) {
			t.Fatalf("the decorator changed the error: %v", got)
		}
	}
	for labels, want := range map[string]string{
		`operation="issue",outcome="signer_unavailable"`:     "1",
		`operation="issue",outcome="outcome_unknown"`:        "1",
		`operation="issue",outcome="signature_check_failed"`: "1",
	} {
		if got := sampleValue(t, m, "anvil_signer_requests_total", labels); got != want {
			t.Errorf("anvil_signer_requests_total{%s} = %s, want %s", labels, got, want)
		}
	}
	if got := sampleValue(t, m, "anvil_signer_request_duration_seconds", `operation="issue"`); got != "3" {
		t.Errorf("signer calls timed: %s, want 3", got)
	}
}

// Validations count under their challenge type and the problem type the
// client sees; a challenge type nobody configured cannot add a series.
func TestValidationOutcomes(t *testing.T) {
	m := metrics.New()
	ctx := context.Background()
	instrumentedValidator{fakeValidator{}, m}.Validate(ctx, acme.Identifier{}, acme.HTTP01, "", "")
	instrumentedValidator{fakeValidator{&acme.ValidationError{Type: "incorrectResponse"}}, m}.Validate(ctx, acme.Identifier{}, acme.DNS01, "", "")
	instrumentedValidator{fakeValidator{&acme.ValidationError{Type: "caa"}}, m}.CheckCAA(ctx, "", false, "", acme.HTTP01)
	instrumentedValidator{fakeValidator{errors.New("boom")}, m}.Validate(ctx, acme.Identifier{}, "evil-01", "", "")
	for labels, want := range map[string]string{
		`challenge="http-01",outcome="valid"`:            "1",
		`challenge="dns-01",outcome="incorrectResponse"`: "1",
		`challenge="other",outcome="serverInternal"`:     "1",
	} {
		if got := sampleValue(t, m, "anvil_validations_total", labels); got != want {
			t.Errorf("anvil_validations_total{%s} = %s, want %s", labels, got, want)
		}
	}
	if got := sampleValue(t, m, "anvil_caa_checks_total", `outcome="caa"`); got != "1" {
		t.Errorf("CAA refusal counted %s", got)
	}
}

// contactingValidator reports the addresses a validation contacted.
type contactingValidator struct{ fakeValidator }

func (contactingValidator) ValidateContacted(context.Context, acme.Identifier, string, string, string) ([]string, error) {
	return []string{"127.0.0.1:80"}, nil
}

// The audit log learns the addresses a validation contacted through
// acme.ContactReporter: the metrics decorator must pass it through, counted.
func TestInstrumentedValidatorKeepsContactReport(t *testing.T) {
	m := metrics.New()
	var v acme.Validator = instrumentedValidator{contactingValidator{}, m}
	cr, ok := v.(acme.ContactReporter)
	if !ok {
		t.Fatal("the instrumented validator hides acme.ContactReporter: the audit log would lose the addresses contacted")
	}
	got, err := cr.ValidateContacted(context.Background(), acme.Identifier{}, acme.HTTP01, "", "")
	if err != nil || len(got) != 1 || got[0] != "127.0.0.1:80" {
		t.Fatalf("ValidateContacted = %v, %v", got, err)
	}
	if n := sampleValue(t, m, "anvil_validations_total", `challenge="http-01",outcome="valid"`); n != "1" {
		t.Errorf("a validation through ValidateContacted counted %s times, want 1", n)
	}
}
