package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/anvil-pki/anvil/config"
	"github.com/anvil-pki/anvil/storage"
)

// ledgerCheck prints the ledger's rows per issuer and outcome, lists the rows
// without an outcome that no live process is working on, and fails if there
// are any: each is a serial that may have been signed and is not yet
// published as revoked.
func ledgerCheck(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("admin ledger check", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "serve YAML file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return errors.New("--config is required")
	}
	var cfg serveConfig
	if err := config.Load(*cfgPath, &cfg); err != nil {
		return err
	}
	ctx := context.Background()
	// On SQLite one process owns the file: its rows are in flight exactly while
	// it runs, which its serve lock says. Ask before opening the database.
	sqliteServing := false
	if cfg.Database.Driver == "sqlite" {
		path, err := cfg.Database.resolvedDSN()
		if err != nil {
			return err
		}
		if sqliteServing, err = sqliteServeRunning(path); err != nil {
			return err
		}
	}
	store, err := openStore(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer store.Close()

	counts, err := store.LedgerCounts(ctx)
	if err != nil {
		return err
	}
	perOutcome := map[string]int64{}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ISSUER\tOUTCOME\tREASON\tROWS")
	for _, c := range counts {
		outcome := c.Outcome
		if outcome == "" {
			outcome = "open"
		}
		perOutcome[outcome] += c.Count
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", c.Issuer, outcome, c.Reason, c.Count)
	}
	tw.Flush()
	fmt.Fprintf(out, "\ntotal: issued %d, not_signed %d, abandoned %d, open %d\n",
		perOutcome[storage.OutcomeIssued], perOutcome[storage.OutcomeNotSigned], perOutcome[storage.OutcomeAbandoned], perOutcome["open"])

	open, err := store.OpenIntents(ctx, nodeLeasePrefix, time.Now())
	if err != nil {
		return err
	}
	var stuck []storage.OpenIntent
	for _, o := range open {
		inFlight := o.HolderLive
		if cfg.Database.Driver == "sqlite" {
			inFlight = sqliteServing
		}
		if !inFlight {
			stuck = append(stuck, o)
		}
	}
	if inFlight := len(open) - len(stuck); inFlight > 0 {
		fmt.Fprintf(out, "in flight: %d open rows held by a running process\n", inFlight)
	}
	if len(stuck) == 0 {
		return nil
	}
	fmt.Fprintf(out, "\nrows without an outcome and not in flight (a signature may exist):\n")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tISSUER\tORDER\tHOLDER\tCREATED\tINTENT")
	for _, o := range stuck {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", o.Serial, o.Issuer, o.OrderID, o.Holder, o.CreatedAt.Format(time.RFC3339), o.HasIntent)
	}
	tw.Flush()
	return fmt.Errorf("%d ledger rows have no outcome and no live process working on them; "+
		"start `anvil serve` (SQLite) or let a node's ledger sweep run (PostgreSQL) to abandon and revoke them", len(stuck))
}

// sqliteServeRunning says whether an `anvil serve` holds the serve lock of
// the SQLite database at path (see lockSQLiteServe), without taking it for
// longer than the test.
func sqliteServeRunning(path string) (bool, error) {
	f, err := os.OpenFile(path+".serve-lock", os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("database.dsn: serve lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return true, nil
		}
		return false, fmt.Errorf("database.dsn: serve lock: %w", err)
	}
	return false, nil
}
