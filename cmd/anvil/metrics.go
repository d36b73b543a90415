package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// hsmCollector exports the HSM tokens' counters.
type hsmCollector struct {
	s                                                  *server
	signs, signErrors, busy, timeouts, recov, recovErr *prometheus.Desc
	up                                                 *prometheus.Desc
}

func newHSMCollector(s *server) *hsmCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("anvil_hsm_"+name, help, []string{"token"}, nil)
	}
	return &hsmCollector{
		s:          s,
		signs:      d("signatures_total", "Signatures made by the token."),
		signErrors: d("sign_errors_total", "Signatures that failed."),
		busy:       d("session_waits_exceeded_total", "Signs refused because no session freed up in time."),
		timeouts:   d("sign_timeouts_total", "Signs the module did not answer in time."),
		recov:      d("reconnects_total", "Successful recoveries of the token."),
		recovErr:   d("reconnect_failures_total", "Failed recovery attempts."),
		up:         d("up", "1 when the token is available for signing."),
	}
}

func (c *hsmCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.signs, c.signErrors, c.busy, c.timeouts, c.recov, c.recovErr, c.up} {
		ch <- d
	}
}

func (c *hsmCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.s.tokens {
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
	}
}

func metricsHandler(s *server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	reg.MustRegister(newHSMCollector(s))
	reg.MustRegister(newLedgerCollector(s.store))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
