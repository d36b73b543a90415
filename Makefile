# Anvil — an ACME CA whose keys stay in a PKCS#11 HSM.
#   make run    SoftHSM2 token, dev hierarchy, SQLite, ACME on https://localhost:14000
#   make test   every test (installs what it needs as root, else says what is missing)
#   make bench  Go benchmarks of the HSM and issuance paths
#   make fuzz   every Go fuzz target for FUZZTIME (default 60s), one after another

GO       ?= go
BIN      := bin/anvil
GOFLAGS  ?=
TESTFLAGS ?= -race -count=1 -timeout 25m

.PHONY: all build test unit bench bench-acme bench-bigdb bench-bigdb-pg bench-crl bench-crl-pg bench-scale run deps deps-run vet fmt clean faultmod fuzz

all: build

build:
	$(GO) build $(GOFLAGS) -o $(BIN) ./cmd/anvil

deps:
	@scripts/deps.sh test

deps-run:
	@scripts/deps.sh run

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi

test: deps vet faultmod
	$(GO) test $(TESTFLAGS) ./...

# The PKCS#11 fault-injection module the HSM fault tests load in place of
# SoftHSM2 (softhsm-test/faultmod); the tests also build it when it is missing.
FAULTMOD := bin/libanvilfault.so
faultmod: $(FAULTMOD)
$(FAULTMOD): softhsm-test/faultmod/faultmod.c
	@mkdir -p bin
	$(CC) -shared -fPIC -O2 -Wall -I/usr/include/p11-kit-1 -Wl,-z,nodelete -o $@ $< -ldl -lpthread

# Unit and SoftHSM2 tests without the race detector, for a quick loop.
unit:
	$(GO) test -count=1 ./...

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 2s ./hsm/ ./issuance/
	$(GO) test -run '^$$' -bench IssuanceFlow -benchtime 3000x ./storage/sqlite/

# A load generator of lego clients against a real anvil serve (SoftHSM2, SQLite):
# complete ACME flows at concurrency 1, 4 and 16. FLOWS per level; add
# PROFILE=/tmp/anvil.prof for a CPU profile of the server at concurrency 16.
# The same load runs against Pebble (PEBBLE_VERSION, go-installed into
# BENCH_CACHE the first time), alternating with Anvil per level; a table of
# both and their ratios ends the output. PEBBLE= (empty) runs Anvil alone;
# PEBBLE_ENV="PEBBLE_AUTHZREUSE=0" adds to Pebble's environment.
FLOWS ?= 2000
PEBBLE_VERSION ?= v2.10.3
BENCH_CACHE ?= $(HOME)/.cache/anvil-bench
PEBBLE ?= $(BENCH_CACHE)/pebble-$(PEBBLE_VERSION)/pebble
bench-acme: deps $(PEBBLE)
	$(GO) test -run '^$$' -bench ACMEFlows -benchtime 1x -timeout 60m ./e2e/ -flows=$(FLOWS) $(if $(PROFILE),-server-profile=$(PROFILE)) $(if $(PROFILE_CONC),-server-profile-conc=$(PROFILE_CONC)) $(if $(PEBBLE),-pebble=$(PEBBLE)) $(if $(PEBBLE_ENV),-pebble-env="$(PEBBLE_ENV)")

$(BENCH_CACHE)/pebble-%/pebble:
	GOBIN=$(dir $@) $(GO) install github.com/letsencrypt/pebble/v2/cmd/pebble@$*

# A SQLite database seeded with ROWS certificates, one in ten revoked: the
# store's work of an issuance (p50/p99), an OCSP answer's read, and a CRL of
# every revoked certificate read and signed on SoftHSM2.
ROWS ?= 100000
DB ?=
bench-bigdb: deps
	$(GO) test -run '^$$' -bench BigDatabase -benchtime 1x -timeout 60m ./storage/sqlite/ -bigdb-rows=$(ROWS)

# The same on PostgreSQL (pgtest's throwaway cluster), rows seeded by the server.
bench-bigdb-pg: deps
	$(GO) test -run '^$$' -bench BigDatabase -benchtime 1x -timeout 60m ./storage/postgres/ -bigdb-rows=$(ROWS)

# CRL generation at ROWS certificates (1 in 10 revoked): one CRL and 16 shards,
# read and signed on SoftHSM2, and the revoked list read before and after the
# covering index. DB= keeps the seeded database for the next run.
bench-crl: deps
	$(GO) test -run '^$$' -bench CRLShards -benchtime 1x -timeout 90m ./storage/sqlite/ -bigdb-rows=$(ROWS) -crl-db=$(DB)

# The same on PostgreSQL (its own throwaway cluster): the revoked list before
# and after migration 0007, the migration's time, and the list per shard.
bench-crl-pg: deps
	$(GO) test -run '^$$' -bench CRLShardsPostgres -benchtime 1x -timeout 60m ./storage/postgres/ -pg-rows=$(ROWS)

# One machine, four deployments at concurrency 16: serve on SQLite, serve on
# PostgreSQL, and one or two front ends before an anvil signer on PostgreSQL.
# CPU per certificate of the Anvil processes and of PostgreSQL, ratios to
# SQLite, statements per certificate; PROFILE_DIR=/tmp/p for CPU profiles.
bench-scale: deps
	$(GO) test -run '^$$' -bench ScaleOutCPU -benchtime 1x -timeout 30m ./e2e/ -flows=$(FLOWS) $(if $(PROFILE_DIR),-scale-profile=$(PROFILE_DIR))

# Every func FuzzXxx in a _test.go file, for FUZZTIME each, one after another:
# go test -fuzz takes one target per run. What a target finds is written to
# its package's testdata/fuzz/FuzzXxx/; `make test` runs those as seeds.
# FUZZFLAGS=-parallel=1 keeps to one core.
FUZZTIME ?= 60s
FUZZFLAGS ?=
fuzz: deps
	@set -e; for f in $$(grep -l '^func Fuzz' $$(find . -name '*_test.go' -not -path './var/*' | sort)); do \
	  for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "== $$t $$(dirname $$f)"; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$(dirname $$f)/; \
	  done; \
	done

run: deps-run build
	@scripts/run-dev.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
