// Command anvil is the one binary of Anvil, an ACME certificate authority whose
// CA keys stay inside a PKCS#11 HSM. Its subcommands:
//
//	anvil serve    --config FILE   the ACME server
//	anvil signer   --config FILE   the issuance service on its own, behind mTLS
//	anvil ceremony --config FILE   an offline key ceremony from one YAML file
//	anvil hsm      ...             operator commands for tokens and keys
//	anvil admin    ...             operator commands for the CA's records
//	anvil version
//
// PINs are never taken from the command line: they come from a file or an
// environment variable named in flags or configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"syscall"

	"github.com/anvil-pki/anvil/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

func main() {
	register("version", "print the version", func([]string) error {
		fmt.Println("anvil", version)
		return nil
	})
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "anvil: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := cmd.run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "anvil %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: anvil <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
}

// startDaemon is the start of a long-running subcommand: it parses
// `--config FILE`, loads the file strictly into cfg, and returns a context
// cancelled by SIGINT or SIGTERM.
func startDaemon(name string, args []string, cfg any) (context.Context, context.CancelFunc, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fs.String("config", "", name+" YAML file")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if *path == "" {
		return nil, nil, errors.New("--config is required")
	}
	if err := config.Load(*path, cfg); err != nil {
		return nil, nil, err
	}
	rememberConfig(*path)
	if os.Getenv("GOGC") == "" {
		// The servers' live heap is a few megabytes, so the default GOGC=100
		// collects very often; collecting at 4x the live heap spends a few
		// more megabytes to save a tenth of the CPU. GOGC in the environment
		// still wins.
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	return ctx, stop, nil
}

// installLogger makes the configured logger the default and returns it.
func installLogger(cfg logConfig) *slog.Logger {
	logger := newLogger(cfg)
	slog.SetDefault(logger)
	return logger
}
