# livestore-relay: `make help` lists the targets.
GO          ?= go
BIN         ?= bin
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 20s
RUN_FLAGS   ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/relay
	$(GO) build -o $(BIN)/relay ./cmd/relay

.PHONY: run
run: build ## start the relay in development mode (prints tokens to try it)
	$(BIN)/relay --dev $(RUN_FLAGS)

.PHONY: test
test: asyncapi-deps ## run every test with the race detector
	$(GO) test -race -shuffle=on -count=1 -timeout 8m ./...

ASYNCAPI_DIR ?= test/asyncapi

.PHONY: asyncapi-deps
asyncapi-deps: ## install the AsyncAPI validator's npm packages (and Node.js, as root on Debian)
	@if [ -f $(ASYNCAPI_DIR)/node_modules/@asyncapi/parser/package.json ]; then exit 0; fi; \
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "asyncapi-deps: installing Debian's nodejs and npm packages"; \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm || exit 1; \
		else \
			echo "asyncapi-deps: node and npm are required to validate protocol/asyncapi.yaml." >&2; \
			echo "  Install Node.js 18 or later with npm (Debian/Ubuntu: sudo apt-get install nodejs npm)," >&2; \
			echo "  then run: make asyncapi-deps" >&2; \
			exit 1; \
		fi; \
	fi; \
	echo "npm ci --prefix $(ASYNCAPI_DIR) --no-audit --no-fund"; \
	npm ci --prefix $(ASYNCAPI_DIR) --no-audit --no-fund

.PHONY: lint
lint: ## go vet, staticcheck and gofmt
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }

.PHONY: fuzz
fuzz: ## fuzz the parsers briefly (FUZZTIME each)
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./protocol/

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
