package acme

import (
	"github.com/anvil-pki/anvil/issuance"
)

// LocalIssuer runs issuance in this process.
type LocalIssuer struct{ *issuance.Service }

var _ Issuer = LocalIssuer{}

// ProfileNames lists the service's profiles, default first.
func (l LocalIssuer) ProfileNames() []ProfileInfo {
	var out []ProfileInfo
	for _, p := range l.Profiles() {
		out = append(out, ProfileInfo{Name: p.Name, Description: p.Description})
	}
	return out
}
