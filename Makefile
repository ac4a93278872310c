# quotad: `make run` starts the authority and a gateway on the in-process store; `make test` installs what is missing and passes.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NPM ?= npm
NODE ?= node

.PHONY: help deps tools build lint typecheck test test-only deploy-check run bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

node_modules/.installed: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $@

deps: node_modules/.installed ## Install the locked npm dependencies

tools: ## Make sure redis-server, promtool, prometheus, openssl and kubectl are there (apt-get when absent and root)
	@scripts/ensure-tools.sh redis-server promtool prometheus openssl curl
	@scripts/ensure-tools.sh kubectl

# Everything the build reads: `make build` (and so `make run`) compiles only when one of them changed.
BUILD_INPUTS := $(shell find src harness test bench proto scripts -type f -not -path 'src/gen/*' 2>/dev/null) \
	package.json package-lock.json tsconfig.json

dist/.built: node_modules/.installed $(BUILD_INPUTS)
	$(NPM) run --silent build
	@touch $@

build: deps dist/.built ## Generate proto types and compile to dist/ (when a source changed)

lint: deps ## ESLint, Prettier and the TypeScript type-check
	$(NPM) run --silent gen
	$(NPM) run --silent typecheck
	$(NPM) run --silent lint

test: deps tools lint build ## Lint, type-check and run every test, deploy checks included (starts its own redis-server)
	$(NPM) test

test-only: build ## Run the tests without lint
	$(NPM) test

deploy-check: tools build ## Render and validate the manifests, rules and dashboard
	$(NODE) --test dist/test/deploy/*.test.js

run: build ## Start the authority (in-process store, demo key) and a gateway (demo upstream without OPENAI_API_KEY); ports: GATEWAY_PORT, AUTHORITY_PORT, METRICS_PORT
	scripts/run.sh

# Options for bench/run.js, e.g. make bench BENCH_ARGS="--only transport,redis --seconds 5"
BENCH_ARGS ?=

bench: build ## Run every benchmark scenario and write bench/RESULTS.md
	@scripts/ensure-tools.sh redis-server redis-benchmark
	$(NODE) dist/bench/run.js $(BENCH_ARGS)

clean: ## Remove build output
	rm -rf dist src/gen
