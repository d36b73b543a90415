package ceremony_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-pki/anvil/ceremony"
)

// The ceremony files shipped in configs/ must be valid: the production examples
// as they are, the development ones once their date placeholders are filled.
func TestShippedCeremonyFilesValidate(t *testing.T) {
	files, _ := filepath.Glob("../configs/*/ceremonies/*.yaml")
	if len(files) < 10 {
		t.Fatalf("found only %d ceremony files under configs/", len(files))
	}
	fill := strings.NewReplacer(
		"@TODAY@", "2026-01-01T00:00:00Z", "@NOW@", "2026-01-01T12:00:00Z",
		"@IN_20_YEARS@", "2046-01-01T00:00:00Z", "@IN_5_YEARS@", "2031-01-01T00:00:00Z",
		"@IN_30_DAYS@", "2026-01-31T12:00:00Z")
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		filled := filepath.Join(t.TempDir(), filepath.Base(f))
		os.WriteFile(filled, []byte(fill.Replace(string(raw))), 0o600)
		if err := ceremony.Check(filled); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
