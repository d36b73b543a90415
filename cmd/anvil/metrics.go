package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// hsmCollector exports the HSM tokens' counters.
type hsmCollector struct {
	core                                               *core
	signs, signErrors, busy, timeouts, recov, recovErr *prometheus.Desc
	up                                                 *prometheus.Desc
	retries, loginRefused, degraded, sigCheckFailures  *prometheus.Desc
}

func newHSMCollector(c *core) *hsmCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("anvil_hsm_"+name, help, []string{"token"}, nil)
	}
	return &hsmCollector{
		core:         c,
		signs:        d("signatures_total", "Signatures made by the token."),
		signErrors:   d("sign_errors_total", "Signatures that failed."),
		busy:         d("session_waits_exceeded_total", "Signs refused because no session freed up in time."),
		timeouts:     d("sign_timeouts_total", "Signs the module did not answer in time."),
		recov:        d("reconnects_total", "Successful recoveries of the token."),
		recovErr:     d("reconnect_failures_total", "Failed recovery attempts."),
		up:           d("up", "1 when the token is available for signing."),
		retries:      d("sign_retries_total", "Signs tried a second time after a failed call."),
		loginRefused: d("login_refused", "1 while the token refuses the PIN: no login until SIGHUP."),
		degraded:     d("degraded", "1 while the token's last signature did not verify."),
		sigCheckFailures: prometheus.NewDesc("anvil_hsm_signature_check_failures_total",
			"Signatures from the token that did not verify with the key's public key.", []string{"token", "key"}, nil),
	}
}

func (c *hsmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.signs, c.signErrors, c.busy, c.timeouts, c.recov, c.recovErr, c.up,
		c.retries, c.loginRefused, c.degraded, c.sigCheckFailures} {
		ch <- d
	}
}

func (c *hsmCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.core.tokens {
		st := t.Stats()
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), t.Label())
		}
		counter(c.signs, st.Signs)
		counter(c.signErrors, st.SignErrors)
		counter(c.busy, st.Busy)
		counter(c.timeouts, st.Timeouts)
		counter(c.recov, st.Recoveries)
		counter(c.recovErr, st.RecoveryFailures)
		up := 0.0
		if st.Available {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, t.Label())
		counter(c.retries, st.SignRetries)
		gauge := func(d *prometheus.Desc, on bool) {
			v := 0.0
			if on {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, t.Label())
		}
		gauge(c.loginRefused, st.LoginRefused)
		gauge(c.degraded, st.Degraded)
		for _, k := range t.KeyStats() {
			ch <- prometheus.MustNewConstMetric(c.sigCheckFailures, prometheus.CounterValue, float64(k.SignatureCheckFailures), t.Label(), k.Label)
		}
	}
}

func metricsHandler(c *core) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newHSMCollector(c))
	reg.MustRegister(newLedgerCollector(c.store))
	// The rest, Go runtime included, is in package metrics.
	return promhttp.HandlerFor(prometheus.Gatherers{c.metrics.Registry(), reg}, promhttp.HandlerOpts{})
}
