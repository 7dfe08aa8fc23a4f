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
test: node-deps etcd-deps ## run every test with the race detector (integration tests with both socket readers), then the client's tests and the demo's browser test; installs Node.js, Chromium and etcd if missing
	RELAYTEST_REQUIRE_NODE=1 RELAYTEST_REQUIRE_ETCD=1 $(GO) test -race -shuffle=on -count=1 -timeout 8m ./...
	RELAYTEST_READER=goroutine $(GO) test -race -shuffle=on -count=1 -timeout 4m ./test/integration/
	$(MAKE) client-test
	$(MAKE) demo-test

CLIENT_DIR ?= client

.PHONY: client-deps
client-deps: node-bin ## install the TypeScript client's npm packages (and Node.js, as root on Debian)
	@if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then \
		echo "client-deps: the client needs Node.js 20 or later; found $$(node --version)" >&2; exit 1; \
	fi; \
	if [ ! -f $(CLIENT_DIR)/node_modules/.package-lock.json ] || [ $(CLIENT_DIR)/package-lock.json -nt $(CLIENT_DIR)/node_modules/.package-lock.json ]; then \
		echo "npm ci --prefix $(CLIENT_DIR) --no-audit --no-fund"; \
		npm ci --prefix $(CLIENT_DIR) --no-audit --no-fund; \
	fi

.PHONY: client-test
client-test: client-deps ## build the TypeScript client and run its tests (LiveStore stores against the relay built from this tree)
	npm run --prefix $(CLIENT_DIR) build
	npm test --prefix $(CLIENT_DIR)

ASYNCAPI_DIR ?= test/asyncapi

.PHONY: node-bin
node-bin: ## install Debian's nodejs and npm through apt (as root) when node or npm is missing
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "node-bin: installing Debian's nodejs and npm packages"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm || exit 1; \
	else \
		echo "node-bin: Node.js 20.19 or later with npm is required (Debian/Ubuntu: sudo apt-get install nodejs npm)." >&2; \
		exit 1; \
	fi

.PHONY: node-deps
node-deps: asyncapi-deps ## install Node.js (through apt, as root, when missing) and the npm packages the tests use

.PHONY: asyncapi-deps
asyncapi-deps: node-bin ## install the AsyncAPI validator's npm packages (and Node.js, as root on Debian)
	@if [ -f $(ASYNCAPI_DIR)/node_modules/@asyncapi/parser/package.json ]; then exit 0; fi; \
	echo "npm ci --prefix $(ASYNCAPI_DIR) --no-audit --no-fund"; \
	npm ci --prefix $(ASYNCAPI_DIR) --no-audit --no-fund

.PHONY: etcd-deps
etcd-deps: ## install etcd for the cluster's etcd-provider test (Debian's etcd-server, through apt, as root) when missing
	@if command -v etcd >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "etcd-deps: installing Debian's etcd-server package"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server || exit 1; \
	else \
		echo "etcd-deps: the etcd binary is required to test the cluster's etcd provider." >&2; \
		echo "  Install etcd 3.4 or later on the PATH (Debian/Ubuntu: sudo apt-get install etcd-server)," >&2; \
		echo "  or run the other tests with: go test ./..." >&2; \
		exit 1; \
	fi

.PHONY: lint
lint: ## go vet, staticcheck and gofmt
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt would change:"; gofmt -l .; exit 1; }

.PHONY: fuzz
fuzz: ## fuzz every parser briefly (FUZZTIME each)
	$(GO) test -run='^$$' -fuzz='^FuzzDecode$$' -fuzztime=$(FUZZTIME) ./protocol/
	$(GO) test -run='^$$' -fuzz='^FuzzValue$$' -fuzztime=$(FUZZTIME) ./protocol/
	$(GO) test -run='^$$' -fuzz='^FuzzReadHeader$$' -fuzztime=$(FUZZTIME) ./transport/wsframe/
	$(GO) test -run='^$$' -fuzz='^FuzzFrameParser$$' -fuzztime=$(FUZZTIME) ./transport/
	$(GO) test -run='^$$' -fuzz='^FuzzTokenFromQuery$$' -fuzztime=$(FUZZTIME) ./auth/
	$(GO) test -run='^$$' -fuzz='^FuzzTokenFromCookie$$' -fuzztime=$(FUZZTIME) ./auth/
	$(GO) test -run='^$$' -fuzz='^FuzzOriginAllow$$' -fuzztime=$(FUZZTIME) ./auth/

.PHONY: proto
proto: ## regenerate actors/clusterpb from its .proto (needs protoc; installs protoc-gen-go at go.mod's protobuf version)
	@command -v protoc >/dev/null || { echo "proto: protoc is required (Debian: apt-get install protobuf-compiler)" >&2; exit 1; }
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$$($(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=module=github.com/livestore-relay/livestore-relay actors/clusterpb/cluster.proto

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)

# --- web demo (client/demo): a LiveStore todo app synced through the relay ---
DEMO_DIR     ?= client/demo
DEMO_PORT    ?= 5173
CHROMIUM     ?= /usr/bin/chromium
DEMO_SOURCES := $(wildcard $(DEMO_DIR)/src/* client/src/*.ts) $(DEMO_DIR)/index.html $(DEMO_DIR)/vite.config.ts $(DEMO_DIR)/tsconfig.json $(DEMO_DIR)/package-lock.json

.PHONY: demo
demo: build demo-build ## serve the web demo with the relay in development mode; prints the one URL to open
	node $(DEMO_DIR)/serve.mjs --port $(DEMO_PORT) --relay $(BIN)/relay --relay-log $(BIN)/demo-relay.log

.PHONY: demo-deps
demo-deps: node-bin ## install the demo's npm packages (and Node.js, as root on Debian)
	@if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then \
		echo "demo-deps: the demo's bundler (vite 8) needs Node.js 20.19 or later; found $$(node --version)" >&2; exit 1; \
	fi; \
	if [ ! -f $(DEMO_DIR)/node_modules/.package-lock.json ] || [ $(DEMO_DIR)/package-lock.json -nt $(DEMO_DIR)/node_modules/.package-lock.json ]; then \
		echo "npm ci --prefix $(DEMO_DIR) --no-audit --no-fund"; \
		PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix $(DEMO_DIR) --no-audit --no-fund; \
	fi

.PHONY: demo-build
demo-build: demo-deps $(DEMO_DIR)/dist/index.html ## bundle the demo (client/demo/dist)

$(DEMO_DIR)/dist/index.html: $(DEMO_SOURCES)
	@echo "building the demo app ($(DEMO_DIR)/dist)"
	@npm run --silent --prefix $(DEMO_DIR) build -- --logLevel warn

.PHONY: chromium-deps
chromium-deps: ## install Debian's chromium (as root) for the browser test when missing
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "chromium-deps: installing Debian's chromium package"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium || exit 1; \
	else \
		echo "chromium-deps: the browser test needs Chromium at $(CHROMIUM)." >&2; \
		echo "  Debian/Ubuntu: sudo apt-get install chromium; elsewhere: make demo-test CHROMIUM=/path/to/chrome" >&2; \
		exit 1; \
	fi

DEMO_TEST_ENV = RELAY_BIN=$(abspath $(BIN))/relay CHROMIUM_PATH=$(CHROMIUM)

.PHONY: demo-test
demo-test: build demo-build chromium-deps ## the demo in headless Chromium: devices as browser contexts, offline, reload, a fresh device, 1,000 todos
	cd $(DEMO_DIR) && $(DEMO_TEST_ENV) npm test

.PHONY: demo-screenshot
demo-screenshot: build demo-build chromium-deps ## retake docs/demo.png (two devices side by side)
	cd $(DEMO_DIR) && $(DEMO_TEST_ENV) DEMO_SCREENSHOT=$(abspath docs/demo.png) node --test --test-name-pattern 'appears on the other' test/
# --- end web demo ---

# --- soak and bench (load generator and checker: cmd/soak, test/soak) ---
SOAK_DURATION    ?= 60s
SOAK_USERS       ?= 2000
SOAK_DEVICES     ?= 4
SOAK_RATE        ?= 2000
SOAK_PEER_PULL   ?= 10s
SOAK_FLAGS       ?=
SOAK_RELAY_FLAGS ?= --max-conns-per-user 64
SOAK_RELAY_FLAGS_EXTRA ?=
SOAK_CONNS_HOLD  ?= 150s

.PHONY: soak
soak: ## soak a fresh relay: SOAK_USERS x SOAK_DEVICES connections, SOAK_RATE pushes/s and peer pulls for SOAK_DURATION (default 60s)
	$(GO) build -o $(BIN)/relay ./cmd/relay
	$(GO) build -o $(BIN)/soak ./cmd/soak
	$(BIN)/soak --spawn-relay $(BIN)/relay --relay-flags "$(SOAK_RELAY_FLAGS)" --relay-log $(BIN)/soak-relay.log \
		--users $(SOAK_USERS) --devices $(SOAK_DEVICES) --rate $(SOAK_RATE) --peer-pull-every $(SOAK_PEER_PULL) \
		--duration $(SOAK_DURATION) --json $(SOAK_FLAGS)

.PHONY: soak-conns
soak-conns: ## hold 19,000 idle bound connections on one relay; prints RSS per connection (SOAK_CONNS_HOLD, default 150s)
	$(GO) build -o $(BIN)/relay ./cmd/relay
	$(GO) build -o $(BIN)/soak ./cmd/soak
	$(BIN)/soak --spawn-relay $(BIN)/relay --relay-flags "--max-conns-per-user 64 $(SOAK_RELAY_FLAGS_EXTRA)" --relay-log $(BIN)/soak-relay.log \
		--users 4750 --devices 4 --idle --duration $(SOAK_CONNS_HOLD) --json $(SOAK_FLAGS)

.PHONY: soak-throughput
soak-throughput: ## 4,000 users x 4 devices, 10,000 pushes/s of 150-byte events for SOAK_DURATION; prints latency and CPU per message
	$(GO) build -o $(BIN)/relay ./cmd/relay
	$(GO) build -o $(BIN)/soak ./cmd/soak
	$(BIN)/soak --spawn-relay $(BIN)/relay --relay-flags "--max-conns-per-user 64 $(SOAK_RELAY_FLAGS_EXTRA)" --relay-log $(BIN)/soak-relay.log \
		--users 4000 --devices 4 --rate 10000 --event-bytes 150 --duration $(SOAK_DURATION) --json $(SOAK_FLAGS)

SOAK_NODES ?= 3

.PHONY: soak-cluster
soak-cluster: ## soak a fresh cluster of SOAK_NODES relay nodes (default 3), each user's devices spread over them; SOAK_* as for soak
	$(GO) build -o $(BIN)/relay ./cmd/relay
	$(GO) build -o $(BIN)/soak ./cmd/soak
	$(BIN)/soak --spawn-relay $(BIN)/relay --spawn-nodes $(SOAK_NODES) --relay-flags "$(SOAK_RELAY_FLAGS)" --relay-log $(BIN)/soak-relay.log \
		--users $(SOAK_USERS) --devices $(SOAK_DEVICES) --rate $(SOAK_RATE) --peer-pull-every $(SOAK_PEER_PULL) \
		--duration $(SOAK_DURATION) --json $(SOAK_FLAGS)

.PHONY: bench
bench: ## run every benchmark with allocation counts
	$(GO) test -run '^$$' -bench . -benchmem ./...
# --- end soak and bench ---
