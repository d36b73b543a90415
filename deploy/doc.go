// Package deploy holds what operators deploy beside Anvil, and the tests that
// keep it true: Prometheus alerting rules with their unit tests
// (prometheus/), and a Grafana dashboard (grafana/). It holds no code that
// Anvil runs.
package deploy
