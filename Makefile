# rgwsync build, check and test entry points.  `make` alone lists the targets.
# Every target runs from a fresh clone on Debian bookworm as root with Go at
# /usr/local/go; whatever else a target needs, it installs (deps, tools).

SHELL       := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# Targets run one after another even under -j: `test` must run the unit tests
# before it boots the integration lab.
.NOTPARALLEL:

# ---- pinned developer tools, built into ./.bin ----
# A tool is rebuilt only when its binary is missing or its pin changes (the
# stamp file .bin/.pin-NAME-VERSION names the version).
BIN                 := .bin
# staticcheck v0.8.2 is release 2026.2.2 (the latest; it needs go >= 1.26).
BUF_VERSION         := v1.75.0
STATICCHECK_VERSION := v0.8.2
GRPCURL_VERSION     := v1.9.4
BUF         := $(BIN)/buf
STATICCHECK := $(BIN)/staticcheck
GRPCURL     := $(BIN)/grpcurl
GO_INSTALL  := GOBIN=$(CURDIR)/$(BIN) go install

# ---- the lab of `make lab-up`, off the stock 6789/8001/8002 (override if taken) ----
LAB        ?= /tmp/rgwsync-lab
MON_PORT   ?= 16789
RGW_A_PORT ?= 18001
RGW_B_PORT ?= 18002

# ---- the dedicated lab of `make test-integration` (booted and stopped by it) ----
TEST_LAB        ?= /tmp/rgwsync-test-lab
TEST_MON_PORT   ?= 26789
TEST_RGW_A_PORT ?= 28001
TEST_RGW_B_PORT ?= 28002
# Labs of other Ceph releases (deploy/ceph-lab/chroot.sh: a Debian chroot
# built once in /srv/ceph-<release>): Tentacle 20.2 and Reef 18.2.
TENTACLE_LAB        ?= /tmp/rgwsync-test-lab-tentacle
TENTACLE_MON_PORT   ?= 26799
TENTACLE_RGW_A_PORT ?= 28011
TENTACLE_RGW_B_PORT ?= 28012
REEF_LAB            ?= /tmp/rgwsync-test-lab-reef
REEF_MON_PORT       ?= 26809
REEF_RGW_A_PORT     ?= 28021
REEF_RGW_B_PORT     ?= 28022
TENTACLE_CHROOT     ?= /srv/ceph-tentacle
# What runs on the other releases: the lab facts and the sync tests (the
# fault runs and the benchmarks run on Pacific).
RELEASE_TEST_PKGS   ?= ./internal/rgwadmin/ ./internal/rgwobj/ ./internal/testkit/synctest/

# Debian packages the lab needs (start.sh checks for their commands).
LAB_PKGS := ceph-mon ceph-osd radosgw ceph-common curl python3
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)

TMP := .tmp

.PHONY: help tools generate verify-generate lint build certs deps lab-up lab-down bench-verify \
        test test-unit test-integration chaos chaos-short bench demo clean

help: ## list the targets (the default)
	@echo "usage: make TARGET [VAR=value ...]"
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-zA-Z0-9_-]+:[^#]*## / {printf "  %-17s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "variables: LAB=$(LAB) MON_PORT=$(MON_PORT) RGW_A_PORT=$(RGW_A_PORT) RGW_B_PORT=$(RGW_B_PORT)"
	@echo "           TEST_LAB=$(TEST_LAB) TEST_MON_PORT=$(TEST_MON_PORT) TEST_RGW_A_PORT=$(TEST_RGW_A_PORT) TEST_RGW_B_PORT=$(TEST_RGW_B_PORT)"

# ---- tools ----

tools: $(BUF) $(STATICCHECK) $(GRPCURL) ## install the pinned buf, staticcheck and grpcurl into ./.bin

$(BUF): $(BIN)/.pin-buf-$(BUF_VERSION)
	$(GO_INSTALL) github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	touch $@

$(STATICCHECK): $(BIN)/.pin-staticcheck-$(STATICCHECK_VERSION)
	$(GO_INSTALL) honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	touch $@

$(GRPCURL): $(BIN)/.pin-grpcurl-$(GRPCURL_VERSION)
	$(GO_INSTALL) github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	touch $@

$(BIN)/.pin-%:
	mkdir -p $(BIN)
	touch $@

# ---- generated code ----

generate: $(BUF) ## regenerate gen/ from proto/ (buf generate; protoc-gen-go* pinned in go.mod)
	rm -rf gen/rgwsync
	$(BUF) generate

verify-generate: $(BUF) ## fail when gen/ differs from what proto/ generates (the tree is left as it is)
	rm -rf $(TMP)/verify-generate
	mkdir -p $(TMP)/verify-generate
	$(BUF) generate -o $(TMP)/verify-generate
	@if ! diff -r gen $(TMP)/verify-generate/gen > $(TMP)/verify-generate.diff; then \
	  echo "gen/ is out of date with proto/ (run 'make generate' and commit):" >&2; \
	  diff -rq gen $(TMP)/verify-generate/gen >&2 || true; \
	  head -n 60 $(TMP)/verify-generate.diff >&2; \
	  echo "(full diff: $(TMP)/verify-generate.diff)" >&2; \
	  exit 1; \
	fi
	rm -rf $(TMP)/verify-generate $(TMP)/verify-generate.diff
	@echo "gen/ matches proto/"

# ---- checks ----

lint: $(BUF) $(STATICCHECK) ## buf lint + breaking (vs the first v1 protos), go vet and staticcheck (with and without -tags integration)
	$(BUF) lint
	@if ! git rev-parse --git-dir >/dev/null 2>&1; then \
	  echo "lint: no git history here: buf breaking needs the commit that added proto/rgwsync/v1" >&2; exit 1; \
	fi
	@if [ "$$(git rev-parse --is-shallow-repository)" = true ]; then \
	  echo "lint: shallow clone: buf breaking needs the full history (git fetch --unshallow)" >&2; exit 1; \
	fi
	@base=$$(git log --diff-filter=A --format=%H -- proto/rgwsync/v1 | tail -1); \
	if [ -z "$$base" ]; then echo "lint: no commit adds proto/rgwsync/v1 in the git history" >&2; exit 1; fi; \
	echo "$(BUF) breaking --against .git#ref=$$base,subdir=proto  (the commit that added proto/rgwsync/v1)"; \
	$(BUF) breaking --against ".git#ref=$$base,subdir=proto"
	go vet ./...
	go vet -tags integration ./...
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags integration ./...

# ---- build ----

build: ## build bin/rgwsync-exporter, bin/rgwsync-applier and bin/rgwsync-certs
	go build -o bin/rgwsync-exporter ./exporter
	go build -o bin/rgwsync-applier ./applier
	go build -o bin/rgwsync-certs ./cmd/rgwsync-certs

# The CA is made once (a new CA would orphan every certificate); the leaves
# are issued anew on each run, which rotates them under running services.
CERTS := $(TMP)/certs
certs: ## demo mTLS certificates in .tmp/certs: CA, exporter (exporter.rgwsync, 127.0.0.1), applier, operator (for grpcurl)
	@mkdir -p $(CERTS)
	@[ -f $(CERTS)/ca.pem ] || go run ./cmd/rgwsync-certs ca -out $(CERTS) -name "rgwsync demo CA"
	@go run ./cmd/rgwsync-certs issue -ca $(CERTS) -out $(CERTS) -name exporter.rgwsync -dns exporter.rgwsync -ip 127.0.0.1 -server
	@go run ./cmd/rgwsync-certs issue -ca $(CERTS) -out $(CERTS) -name applier.rgwsync -ip 127.0.0.1 -client -server
	@go run ./cmd/rgwsync-certs issue -ca $(CERTS) -out $(CERTS) -name operator.rgwsync -client

# ---- the lab ----

deps: ## apt-get install the lab's Debian packages that are missing (Ceph Pacific, curl, python3)
	@missing=(); \
	for p in $(LAB_PKGS); do \
	  status=$$(dpkg -s "$$p" 2>/dev/null | sed -n 's/^Status: //p' || true); \
	  [ "$$status" = "install ok installed" ] || missing+=("$$p"); \
	done; \
	if [ $${#missing[@]} -eq 0 ]; then echo "deps: installed: $(LAB_PKGS)"; exit 0; fi; \
	echo "deps: missing: $${missing[*]}"; \
	export DEBIAN_FRONTEND=noninteractive; \
	set -x; \
	$(SUDO) apt-get update; \
	$(SUDO) apt-get install -y --no-install-recommends "$${missing[@]}"

lab-up: deps ## start a lab in LAB for manual use (zone-a :18001, zone-b :18002 by default)
	LAB=$(LAB) MON_PORT=$(MON_PORT) RGW_A_PORT=$(RGW_A_PORT) RGW_B_PORT=$(RGW_B_PORT) deploy/ceph-lab/start.sh
	@echo "endpoints:  RGWSYNC_LAB_DIR=$(LAB) RGWSYNC_LAB_ZONE_A=http://127.0.0.1:$(RGW_A_PORT) RGWSYNC_LAB_ZONE_B=http://127.0.0.1:$(RGW_B_PORT)"
	@curl -sf -o /dev/null http://127.0.0.1:$(RGW_A_PORT)/ \
	  && echo "zone-a answers: anonymous GET http://127.0.0.1:$(RGW_A_PORT)/ ok" \
	  || { echo "zone-a does not answer on http://127.0.0.1:$(RGW_A_PORT)/" >&2; exit 1; }

lab-down: ## stop the lab in LAB (its recorded PIDs only) and wipe it
	LAB=$(LAB) deploy/ceph-lab/stop.sh --wipe

# ---- tests ----

# make test: the unit tests while the Tentacle chroot is built (or found
# ready), then the integration tests on Pacific (all packages, the short fault
# run included) and on Tentacle (RELEASE_TEST_PKGS) side by side, each on a
# lab of its own; Tentacle's output lines start with "tentacle| ".
test: deps $(GRPCURL) ## unit tests, then the integration tests on Ceph Pacific and Tentacle side by side (two labs of their own)
	deploy/ceph-lab/side-by-side.sh unit '$(MAKE) --no-print-directory test-unit' \
	  chroot 'deploy/ceph-lab/chroot.sh tentacle $(TENTACLE_CHROOT)'
	deploy/ceph-lab/side-by-side.sh pacific '$(MAKE) --no-print-directory test-integration' \
	  tentacle '$(MAKE) --no-print-directory test-tentacle'

test-unit: ## go test -race ./...
	go test -race -count=1 ./...

# The integration tests call .bin/grpcurl (internal/testkit/synctest), so it is built here too.
test-integration: deps $(GRPCURL) ## go test -tags integration ./... against a lab of its own, booted and stopped around it
	LAB=$(TEST_LAB) MON_PORT=$(TEST_MON_PORT) RGW_A_PORT=$(TEST_RGW_A_PORT) RGW_B_PORT=$(TEST_RGW_B_PORT) \
	  deploy/ceph-lab/with-lab.sh go test -tags integration -count=1 -p 1 -timeout 25m ./...

test-tentacle: deps $(GRPCURL) ## the integration tests of RELEASE_TEST_PKGS against a Ceph Tentacle (20.2) lab of their own
	CEPH_RELEASE=tentacle CEPH_CHROOT=$(TENTACLE_CHROOT) LAB=$(TENTACLE_LAB) MON_PORT=$(TENTACLE_MON_PORT) RGW_A_PORT=$(TENTACLE_RGW_A_PORT) RGW_B_PORT=$(TENTACLE_RGW_B_PORT) \
	  LOGS_OUT=$(CURDIR)/$(TMP)/lab-logs-tentacle deploy/ceph-lab/with-lab.sh go test -tags integration -count=1 -p 1 -timeout 30m $(RELEASE_TEST_PKGS)

test-reef: deps $(GRPCURL) ## the integration tests of RELEASE_TEST_PKGS against a Ceph Reef (18.2) lab of their own
	CEPH_RELEASE=reef LAB=$(REEF_LAB) MON_PORT=$(REEF_MON_PORT) RGW_A_PORT=$(REEF_RGW_A_PORT) RGW_B_PORT=$(REEF_RGW_B_PORT) \
	  LOGS_OUT=$(CURDIR)/$(TMP)/lab-logs-reef deploy/ceph-lab/with-lab.sh go test -tags integration -count=1 -p 1 -timeout 30m $(RELEASE_TEST_PKGS)

test-all-releases: test test-reef ## make test (Pacific and Tentacle), then the integration tests on Reef

# ---- fault injection ----

# `make chaos` boots a lab of its own (ports clear of the test lab's 28xxx,
# the demo's 48xxx and the bench's 29xxx) and runs the full fault suite:
# CHAOS_KILLS process faults, CHAOS_LINK_FAULTS toxiproxy faults, SIGSTOPs
# past the lease and gateway faults over CHAOS_DURATION while a seeded
# workload writes, then waits for zone-b to equal zone-a. The report is
# printed and written to .tmp/chaos-report.txt. See RELIABILITY.md.
CHAOS_LAB            ?= /tmp/rgwsync-chaos-lab
CHAOS_MON_PORT       ?= 27789
CHAOS_RGW_A_PORT     ?= 27001
CHAOS_RGW_B_PORT     ?= 27002
CHAOS_SEED           ?= 1
CHAOS_KILLS          ?= 110
CHAOS_LINK_FAULTS    ?= 24
CHAOS_LEASE_FAULTS   ?= 6
CHAOS_GATEWAY_FAULTS ?= 15
CHAOS_DURATION       ?= 12m
CHAOS_CONVERGE       ?= 5m
CHAOS_SHORT_SEED     ?= 20260806
CHAOS_EXTENDED       ?= 0

chaos: deps ## full fault-injection run (>= 100 kills, >= 20 link faults, < 20 min) on a lab of its own; CHAOS_SEED=n reproduces a run, CHAOS_EXTENDED=1 adds version tags/ACLs, versioning toggles, reshards and a tenant's bucket
	@mkdir -p $(TMP)
	LAB=$(CHAOS_LAB) MON_PORT=$(CHAOS_MON_PORT) RGW_A_PORT=$(CHAOS_RGW_A_PORT) RGW_B_PORT=$(CHAOS_RGW_B_PORT) \
	  CHAOS_SEED=$(CHAOS_SEED) CHAOS_KILLS=$(CHAOS_KILLS) CHAOS_LINK_FAULTS=$(CHAOS_LINK_FAULTS) \
	  CHAOS_LEASE_FAULTS=$(CHAOS_LEASE_FAULTS) CHAOS_GATEWAY_FAULTS=$(CHAOS_GATEWAY_FAULTS) CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_CONVERGE=$(CHAOS_CONVERGE) \
	  CHAOS_REPORT=$(CURDIR)/$(TMP)/chaos-report.txt CHAOS_EXTENDED=$(CHAOS_EXTENDED) \
	  deploy/ceph-lab/with-lab.sh go test -tags integration -count=1 -run '^TestChaos$$' -v -timeout 50m ./internal/testkit/chaos/

chaos-short: deps ## the short seeded fault run alone (~3 min; also part of make test), on a lab of its own; CHAOS_SHORT_SEED=n
	LAB=$(CHAOS_LAB) MON_PORT=$(CHAOS_MON_PORT) RGW_A_PORT=$(CHAOS_RGW_A_PORT) RGW_B_PORT=$(CHAOS_RGW_B_PORT) CHAOS_SEED=$(CHAOS_SHORT_SEED) CHAOS_EXTENDED=$(CHAOS_EXTENDED) \
	  deploy/ceph-lab/with-lab.sh go test -tags integration -count=1 -run '^TestChaosShort$$' -v -timeout 20m ./internal/testkit/chaos/

# ---- benchmark ----

# `make bench` boots two labs of its own, one after the other (rgwsync +
# copy floor, then Ceph's built-in sync), on ports clear of the other labs.
BENCH_N      ?= 1
BENCH_FLAGS  ?=
BENCH_LAB    ?= /tmp/rgwsync-bench-lab
BENCH_BUILTIN_LAB ?= /tmp/rgwsync-bench-builtin-lab

bench: deps ## benchmark rgwsync vs Ceph's built-in sync and a plain copier, labs of its own (BENCH_N=rounds, BENCH_FLAGS=-quick); see BENCHMARKS.md
	go run ./internal/testkit/bench -n $(BENCH_N) -lab-dir $(BENCH_LAB) -builtin-lab-dir $(BENCH_BUILTIN_LAB) \
	  -mon-port 29789 -zone-a-port 29001 -zone-b-port 29002 \
	  -builtin-mon-port 29889 -builtin-zone-a-port 29101 -builtin-zone-b-port 29102 $(BENCH_FLAGS)

BENCH_VERIFY_OBJECTS ?= 100000

bench-verify: deps ## verify's benchmark: a bucket of BENCH_VERIFY_OBJECTS (100,000) objects synced, then compared (versions/s, peak RSS); see BENCHMARKS.md
	go run ./internal/testkit/bench -verify-only -verify-objects $(BENCH_VERIFY_OBJECTS) -lab-dir $(BENCH_LAB) \
	  -mon-port 29789 -zone-a-port 29001 -zone-b-port 29002 $(BENCH_FLAGS)

# ---- demo ----

demo: deps build $(GRPCURL) ## run deploy/demo.sh (the binaries against a lab of its own)
	bash deploy/demo.sh

clean: ## remove bin/ and .tmp/ (the tools in .bin/ stay)
	rm -rf bin $(TMP)
