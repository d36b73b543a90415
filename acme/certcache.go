package acme

import "sync"

// recentCertificates keeps the certificates this node issued last, by serial
// as in the certificate URL. A client downloads its certificate right after
// finalizing (lego twice: the default chain and the alternate), and a
// certificate never changes once issued, so an entry is right whatever other
// nodes do; a download that misses reads the ledger.
type recentCertificates struct {
	mu       sync.Mutex
	bySerial map[string]recentCertificate
}

type recentCertificate struct {
	der    []byte
	issuer string
}

// recentCertificatesSize bounds the cache (~1.5 MB of DER); a full cache
// starts over.
const recentCertificatesSize = 1024

func (c *recentCertificates) put(serial string, der []byte, issuer string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bySerial == nil || len(c.bySerial) >= recentCertificatesSize {
		c.bySerial = map[string]recentCertificate{}
	}
	c.bySerial[serial] = recentCertificate{der: der, issuer: issuer}
}

func (c *recentCertificates) get(serial string) (recentCertificate, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.bySerial[serial]
	return r, ok
}
