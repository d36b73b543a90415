package revocation

// EvictOCSP runs the cache eviction that Run does after each CRL check.
func EvictOCSP(p *Publisher) { p.evictOCSP() }

// CachedOCSPResponses counts the responses in the cache.
func CachedOCSPResponses(p *Publisher) int {
	n := 0
	for _, st := range p.issuers {
		st.responses.Range(func(any, any) bool { n++; return true })
	}
	return n
}

// ParseOCSPRequest and DecodeOCSPGET are the request parsing of ServeOCSP.
var (
	ParseOCSPRequest = parseRequest
	DecodeOCSPGET    = decodeGETRequest
)
