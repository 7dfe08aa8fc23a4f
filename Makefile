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
test: ## run every test with the race detector
	$(GO) test -race -shuffle=on -count=1 -timeout 8m ./...

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
