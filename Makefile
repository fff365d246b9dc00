# eks-task-worker — see README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help build lint package release unit test demo bench load memory-table fuzz mutants mutants-contract local-up local-down local-reset deploy-local

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## build every crate (debug)
	$(CARGO) build --workspace --all-targets

TOOLS := $(HOME)/.cache/eks-task-worker/tools-venv/bin
DOCS_TOOLS := $(HOME)/.cache/eks-task-worker/docs-venv/bin
NPM_TOOLS := $(HOME)/.cache/eks-task-worker/npm-tools/node_modules
ASL_VALIDATOR := $(NPM_TOOLS)/.bin/asl-validator

lint: ## rustfmt, clippy, the library's doc links, cfn-lint, sam validate --lint, the ASL validator, the JSONata example's check, the Markdown links, the docs book (mkdocs --strict) and that every patch of make mutants still applies, as CI runs them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -p worker --no-deps
	scripts/install-tools.sh
	$(TOOLS)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(TOOLS)/sam validate --lint --region us-east-1
	$(ASL_VALIDATOR) $(foreach f,$(wildcard statemachines/*.asl.json),--json-path $(f))
	NODE_PATH=$(NPM_TOOLS) node scripts/check-jsonata-twin.js statemachines/run-job.asl.json statemachines/run-job.jsonata.asl.json
	python3 scripts/check-links.py README.md docs/*.md CONTRIBUTING.md SECURITY.md CHANGELOG.md RELIABILITY.md BENCHMARKS.md
	$(DOCS_TOOLS)/mkdocs build --strict --quiet -f mkdocs.yml
	@for p in tests/mutants/*.patch; do git apply --check "$$p" || { echo "$$p no longer applies: make it again on the code as it is"; exit 1; }; done; echo "every patch of make mutants applies"

package: ## sam build: the arm64 bootstrap binaries (cargo-lambda, zig), in .aws-sam/build
	scripts/install-tools.sh --package
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(TOOLS):$$PATH" SAM_CLI_TELEMETRY=0 $(TOOLS)/sam build --beta-features --no-cached

release: ## what a user deploys, built once: the arm64 function zips, the packaged template, the command-line tool for x86_64 and aarch64, SHA256SUMS, in dist/ (docs/deploy.md)
	scripts/release/release.sh

unit: ## unit tests only (no local world needed)
	$(CARGO) test --workspace --lib --bins

WORLD_DIR ?= $(or $(LOCAL_WORLD_DIR),.local-world)

test: lint ## everything: lint, unit tests, integration tests against the local world, the secret scan over every function log of the run, then each function's IAM against the AWS calls its binary made in them
	$(CARGO) build --workspace --all-targets
	rm -f $(WORLD_DIR)/logs/aws-calls.jsonl
	scripts/run-tests.sh scripts/with-world.sh scripts/test-then-scan.sh $(CARGO) test --workspace --no-fail-fast
	$(TOOLS)/python scripts/local-lambda/iam_check.py --template template.yaml --journal $(WORLD_DIR)/logs/aws-calls.jsonl

bench: ## benchmarks: criterion micro-benchmarks, then P1/P3/P4 and sizes on the local world (release build; see BENCHMARKS.md)
	$(CARGO) bench -p worker --bench budget_and_token
	$(CARGO) build --release --bins -p run-job -p call -p poller -p activity -p cluster-ops -p cleanup -p eks-task-worker
	mkdir -p target/bench
	scripts/with-world.sh $(HOME)/.cache/eks-task-worker/venv/bin/python scripts/bench/bench.py --world .local-world/world.json --bin target/release | tee target/bench/figures.json

LOAD_ARGS ?=
load: ## the load run: 200 Jobs at once through the release run-job and poller, clean and with 2 % of requests failed at random (BENCHMARKS.md, RELIABILITY.md); LOAD_ARGS="--jobs 50" for a smaller one, LOAD_ARGS="--jobs 1000 --map 50 --reserved 50 --runs clean" for a Map against run-job's reserved concurrency
	$(CARGO) build --release --bins -p run-job -p poller
	mkdir -p target/load
	set -o pipefail; scripts/with-world.sh $(HOME)/.cache/eks-task-worker/venv/bin/python scripts/bench/load.py --world .local-world/world.json --bin target/release $(LOAD_ARGS) | tee target/load/figures.json

memory-table: ## the memory table: run-job, a poll, a cluster operation, a cleanup sweep and P4's log phase at 128-1,769 MB, each at Lambda's CPU share and memory limit (release build; BENCHMARKS.md)
	$(CARGO) build --release --bins -p run-job -p poller -p cluster-ops -p cleanup -p eks-task-worker
	mkdir -p target/bench
	scripts/with-world.sh $(HOME)/.cache/eks-task-worker/venv/bin/python scripts/bench/memory_table.py --world .local-world/world.json --bin target/release | tee target/bench/memory-table.json

FUZZ_SECONDS ?= 60
fuzz: ## cargo-fuzz: the payload parsers, the budget trimmer, the hand-off round trip, FUZZ_SECONDS each (RELIABILITY.md)
	scripts/fuzz.sh $(FUZZ_SECONDS)

mutants: ## replays the mutations committed as code (tests/mutants): each must turn its test red; not part of make test (RELIABILITY.md, "Mutations as code")
	scripts/mutants.sh

mutants-contract: ## cargo-mutants over the native contract (shared/src/contract): every mutant the tool makes must be caught by the library's tests, but those excluded in .cargo/mutants.toml with why (about 100 minutes; RELIABILITY.md)
	scripts/cargo-mutants.sh

deploy-local: ## sam deploy of the release (make release first; no second build) to LocalStack's CloudFormation, then its example run on the deployed zips (docs/deploy.md)
	scripts/with-world.sh scripts/local-deploy/deploy.sh

demo: ## the whole thing locally: a state machine in moto runs a Job through the worker's real binaries
	scripts/demo.sh

local-up: ## start the local world (installs and builds what is missing, first time ~15 min)
	scripts/local-world/up.sh

local-down: ## stop the local world
	scripts/local-world/down.sh

local-reset: local-down ## stop the local world and start it afresh
	scripts/local-world/up.sh
