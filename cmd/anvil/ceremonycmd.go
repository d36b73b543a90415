package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/anvil-pki/anvil/ceremony"
)

func init() {
	register("ceremony", "run a key ceremony from one YAML file", runCeremony)
}

func runCeremony(args []string) error {
	fs := flag.NewFlagSet("ceremony", flag.ContinueOnError)
	path := fs.String("config", "", "ceremony YAML file")
	check := fs.Bool("check", false, "only decode and validate the file; touch no HSM and no file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("--config is required")
	}
	if *check {
		if err := ceremony.Check(*path); err != nil {
			return err
		}
		fmt.Printf("%s: valid\n", *path)
		return nil
	}
	return ceremony.Run(context.Background(), *path, ceremony.Options{
		Out:     os.Stdout,
		Ask:     promptPIN,
		Version: version,
	})
}

// promptPIN reads a PIN from the controlling terminal without echoing it.
func promptPIN() (string, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("no terminal to prompt on: %w", err)
	}
	defer tty.Close()
	fmt.Fprint(tty, "HSM user PIN: ")
	pin, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return "", err
	}
	return string(pin), nil
}
