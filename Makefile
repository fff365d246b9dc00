# eks-task-worker — see README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help build lint unit test local-up local-down local-status install-world

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## build every crate (debug)
	$(CARGO) build --workspace --all-targets

lint: ## rustfmt and clippy, as CI runs them
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: ## unit tests only (no local world needed)
	$(CARGO) test --workspace --lib --bins

test: lint ## everything: lint, unit tests, integration tests against the local world
	$(CARGO) test --workspace
