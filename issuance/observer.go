package issuance

import "time"

// Phases of an issuance an Observer is told about.
const (
	PhaseLint  = "lint"     // building the lint certificate and running the linter
	PhaseSign  = "hsm_sign" // the HSM signature over the linted TBS
	PhaseStore = "store"    // recording the signed certificate in the ledger
)

// Observer is told how each issuance went and how long its parts took, for
// metrics. It must be quick and must not fail: it changes no outcome. issuer
// and profile are "" when the request failed before they were chosen; profile
// is only ever a configured profile's name, never what a client asked for.
type Observer interface {
	IssuanceDone(issuer, profile string, err error, d time.Duration)
	IssuancePhaseDone(phase, issuer string, d time.Duration)
}

type noObserver struct{}

func (noObserver) IssuanceDone(string, string, error, time.Duration) {}
func (noObserver) IssuancePhaseDone(string, string, time.Duration)   {}

// observeIssue reports one Issue call: p is nil when Prepare failed.
func (s *Service) observeIssue(req Request, p *Prepared, err error, start time.Time) {
	var issuer, profile string
	if p != nil {
		issuer, profile = p.issuer.name, p.profile.Name
	} else {
		name := req.Profile
		if name == "" {
			name = s.defaultProfile
		}
		if _, ok := s.profiles[name]; ok {
			profile = name
		}
	}
	s.obs.IssuanceDone(issuer, profile, err, time.Since(start))
}

// phase reports how long a part of an issuance took, from start.
func (s *Service) phase(phase, issuer string, start time.Time) {
	s.obs.IssuancePhaseDone(phase, issuer, time.Since(start))
}
