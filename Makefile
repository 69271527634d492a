# Rustynet. `make test` is what CI runs (through .ci/run); `make build` puts
# every binary in ./bin.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 20s
# Packages whose tests are slow or need privileges run with the rest; their
# own skips say why when something is missing (RUSTYNET_REQUIRE=all turns
# those skips into failures).
TEST_FLAGS ?= -count=1 -timeout 30m

.PHONY: all build test race lint fuzz bench clean agility-report compat-docs dr-report pq-experiment deps gate mutate rules docs images man

all: lint build test

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

# The patched copy of wireguard-go (third_party/wireguard-go) is its own
# module, outside ./...: its tests run here too, the patch's
# (TestCrossedResponseKeepsIndex) with upstream's, all of them, so a renamed
# test cannot drop out unseen (about 7 s).
test:
	$(GO) test $(TEST_FLAGS) ./...
	cd third_party/wireguard-go && $(GO) test $(TEST_FLAGS) ./...

# Install the Debian packages the tests and gates need (as root).
deps:
	.ci/install-deps

# The main job: run the nightly channel end to end, sign the evidence with a
# development key (created on first use in .gate-dev/), write the bundle and
# its report under out/, and print where they are. Exit 1 if blocked.
GATE_OUT ?= out/gate-$(shell date -u +%Y%m%dT%H%M%SZ)
gate: deps
	$(GO) run ./cmd/rustynet-gate run --policy policies/release.yaml --channel nightly --out $(GATE_OUT)

# Prove the gates can fail: apply every seeded regression (gates/*/mutants.yaml)
# to a snapshot of the tree, run the gate that must block it, and print the
# mutation score. Exit 1 below 100%. Long (about two and a half hours on two cores): a scheduled CI
# workflow runs it, not make test.
mutate: deps
	$(GO) run ./cmd/rustynet-gate mutate

race:
	$(GO) test -race $(TEST_FLAGS) ./controller/... ./node/...

# gofmt, go vet, and actionlint on the workflows that run the channels and
# gate the release.
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run github.com/rhysd/actionlint/cmd/actionlint@v1.7.7 -shellcheck= .github/workflows/*.yml

# Run every fuzz target for FUZZTIME each (their seed corpora already run in
# `make test`).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# Benchmarks print their environment with -v; figures are per run of this
# machine, compare them with benchstat.
bench:
	$(GO) test -run '^$$' -bench 'BenchmarkRegister' -benchtime 3000x -v -timeout 30m ./controller/
	$(GO) test -run '^$$' -bench 'BenchmarkFanout' -benchtime 5x -v -timeout 60m ./controller/
	$(GO) test -run '^$$' -bench 'BenchmarkHostileConnections' -benchtime 1x -v -timeout 10m ./controller/
	$(GO) test -run '^$$' -bench 'BenchmarkRouteApply' -benchtime 100x -v ./node/router/
	$(GO) test -run '^$$' -bench 'BenchmarkMeshThroughput' -benchtime 5x -v -timeout 30m ./node/
	$(GO) test -run '^$$' -bench 'BenchmarkReconnect' -benchtime 20x -v -timeout 30m ./node/
	$(GO) test -run '^$$' -bench 'BenchmarkRawVeth' -benchtime 3x -v ./internal/testbed/
	$(GO) test -run '^$$' -bench 'BenchmarkPaths' -benchtime 1x -v -timeout 30m ./internal/pathbench/
	$(GO) test -run '^$$' -bench 'BenchmarkSeal' -v ./internal/pathbench/
	$(GO) test -run '^$$' -bench 'BenchmarkDatagramLoop' -benchtime 100000x -v ./node/backend/quic/

# Regenerate the SLO rules (ops/prometheus/rules/slo-*.yml) from the specs in
# slos/ with Sloth's library, and the SLO and alert catalogues of
# documents/operations/; internal/slo's tests fail when they are stale.
rules:
	$(GO) run ./internal/slo/slogen

# Run the backend conformance suite (root) and regenerate the backend agility
# report from it.
agility-report:
	$(GO) run ./internal/agility/agilityreport -out documents/agility/backend-agility.md

# Regenerate documents/compatibility/support-policy.md (from
# policies/compat.yaml and the capability history) and
# documents/security/crypto-deprecation-schedule.md (from
# policies/crypto.yaml); a test fails when either is stale.
compat-docs:
	$(GO) run ./gates/compat/supportdoc
	$(GO) run ./gates/cryptopolicy/scheduledoc

# Run the dr gate (the drills of DR_CHANNEL, beta by default: the full set,
# about 45 minutes) and write documents/resilience/dr-validation.md from
# its signed evidence, passed or not (the report says which). With
# DR_BUNDLE=DIR, write it from that bundle instead (DR_PUBKEY: its key).
DR_CHANNEL ?= beta
DR_OUT ?= out/dr-$(shell date -u +%Y%m%dT%H%M%SZ)
dr-report: deps
	@set -e; bundle="$(DR_BUNDLE)"; \
	if [ -z "$$bundle" ]; then \
	  bundle="$(DR_OUT)"; \
	  TESTCONTAINERS_RYUK_DISABLED=true $(GO) run ./cmd/rustynet-gate run --policy policies/release.yaml \
	    --channel $(DR_CHANNEL) --gates build,dr --out "$$bundle" || rc=$$?; \
	  case "$${rc:-0}" in 0|1|4) ;; *) exit $$rc;; esac; \
	fi; \
	$(GO) run ./gates/dr/drreport -bundle "$$bundle" $(if $(DR_PUBKEY),-pubkey $(DR_PUBKEY))

# Run the pq-readiness gate (PQ_CHANNEL, beta by default: the whole
# experiment, with its throughput rounds and idle windows) and write
# documents/pq/readiness.md from its signed evidence, passed or not (the
# report says which). With PQ_BUNDLE=DIR, write it from that bundle
# instead (PQ_PUBKEY: its key).
PQ_CHANNEL ?= beta
PQ_OUT ?= out/pq-$(shell date -u +%Y%m%dT%H%M%SZ)
pq-experiment: deps
	@set -e; bundle="$(PQ_BUNDLE)"; \
	if [ -z "$$bundle" ]; then \
	  bundle="$(PQ_OUT)"; \
	  $(GO) run ./cmd/rustynet-gate run --policy policies/release.yaml \
	    --channel $(PQ_CHANNEL) --gates build,pq-readiness --out "$$bundle" || rc=$$?; \
	  case "$${rc:-0}" in 0|1|4) ;; *) exit $$rc;; esac; \
	fi; \
	$(GO) run ./gates/pqreadiness/pqreport -bundle "$$bundle" $(if $(PQ_PUBKEY),-pubkey $(PQ_PUBKEY))

# Render the release's seven deliverables into documents/ from a bundle
# (DOCS_BUNDLE, required; DOCS_PUBKEY: its key, the development key by
# default) and the policies of its commit, which must be checked out:
# each names the commit and the bundle's manifest digest it came from.
DOCS_PUBKEY ?= .gate-dev/gate.pub
docs:
	@test -n "$(DOCS_BUNDLE)" || { echo "make docs: set DOCS_BUNDLE=DIR, a bundle of rustynet-gate run (a whole channel renders all seven)" >&2; exit 2; }
	$(GO) run ./cmd/rustynet-gate docs "$(DOCS_BUNDLE)" --pubkey "$(DOCS_PUBKEY)" --out documents

# The man pages of the four binaries, one per command (sections 1 and 8),
# into out/man/; install them with: cp out/man/* /usr/local/share/man/manN/
man: build
	@mkdir -p out/man
	@for b in rustynet rustynetd rustynet-controller rustynet-gate; do ./bin/$$b man out/man || exit 1; done
	@ls out/man | wc -l | xargs printf 'out/man: %s pages\n'

# The daemons' container images, FROM scratch around the static binaries
# (deploy/container/); IMAGE_TAG defaults to the version.
IMAGE_TAG ?= $(VERSION)
images: build
	docker build -f deploy/container/rustynet-controller.Dockerfile -t rustynet-controller:$(IMAGE_TAG) .
	docker build -f deploy/container/rustynetd.Dockerfile -t rustynetd:$(IMAGE_TAG) .

clean:
	rm -rf bin
