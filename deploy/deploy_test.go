package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/metrics"
)

const (
	rulesFile     = "prometheus/anvil-rules.yml"
	rulesTestFile = "prometheus/anvil-rules.test.yml"
	dashboardFile = "grafana/anvil.json"
)

// promtool comes with Debian's prometheus package (scripts/deps.sh test).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed: it checks the alert rules (apt-get install prometheus, or scripts/deps.sh test): %v", err)
	}
	return p
}

func runPromtool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The rules are valid PromQL and their unit tests pass: each alert fires on
// its failure and stays quiet on a healthy twin.
func TestAlertRules(t *testing.T) {
	runPromtool(t, ".", "check", "rules", rulesFile)
	out := runPromtool(t, "prometheus", "test", "rules", filepath.Base(rulesTestFile))
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// Every alert the issue asks for is there.
func TestAlertRulesCoverTheFailures(t *testing.T) {
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, alert := range []string{
		"AnvilCACertificateExpiringSoon", "AnvilCRLNearNextUpdate", "AnvilHSMTokenDown",
		"AnvilHSMLoginRefused", "AnvilSignatureCheckFailure", "AnvilHighServerInternalRatio",
		"AnvilIssuanceStalled",
	} {
		if !strings.Contains(string(b), "alert: "+alert+"\n") {
			t.Errorf("%s has no alert %s", rulesFile, alert)
		}
		if !strings.Contains(mustRead(t, rulesTestFile), "alertname: "+alert+"\n") {
			t.Errorf("%s does not test %s", rulesTestFile, alert)
		}
	}
}

// definedElsewhere are the metrics exported outside package metrics: the HSM
// tokens' counters, collected in cmd/anvil, and the ledger rows.
var definedElsewhere = []string{
	"anvil_hsm_signatures_total", "anvil_hsm_sign_errors_total", "anvil_hsm_session_waits_exceeded_total",
	"anvil_hsm_sign_timeouts_total", "anvil_hsm_reconnects_total", "anvil_hsm_reconnect_failures_total",
	"anvil_hsm_up", "anvil_hsm_signature_check_failures_total", "anvil_hsm_login_refused",
	"anvil_ledger_rows",
}

var metricName = regexp.MustCompile(`\b(anvil|go|process)_[a-z0-9_]+\b`)

// dashboardExprs are the PromQL expressions of every panel.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(mustRead(t, dashboardFile)), &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has a target without an expression", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("%s has %d expressions; the dashboard lost its panels", dashboardFile, len(exprs))
	}
	return exprs
}

// The dashboard's expressions are valid PromQL (promtool checks them as
// recording rules) and, with the rules, name only metrics the server exports.
func TestDashboardAndRulesNameExportedMetrics(t *testing.T) {
	exprs := dashboardExprs(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, _ := json.Marshal(e)
		fmt.Fprintf(&rules, "      - record: dashboard:expr_%d\n        expr: %s\n", i, q)
	}
	tmp := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(tmp, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, ".", "check", "rules", tmp)

	known := append(metrics.New().Names(), definedElsewhere...)
	known = append(known, "go_goroutines", "process_resident_memory_bytes")
	check := func(where, text string) {
		for _, name := range metricName.FindAllString(text, -1) {
			if !slices.Contains(known, name) {
				t.Errorf("%s names %s, which no Anvil process exports", where, name)
			}
		}
	}
	for _, e := range exprs {
		check(dashboardFile, e)
	}
	check(rulesFile, mustRead(t, rulesFile))
	// And the other way: every family of package metrics is on the dashboard.
	all := strings.Join(exprs, "\n")
	for _, name := range metrics.New().Names() {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !strings.Contains(all, base) {
			t.Errorf("%s shows nothing of %s", dashboardFile, base)
		}
	}
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
