# Regie build. `make run` starts the server with demo data on the embedded
# store; `make test` runs every test; `make bench` runs the benchmarks.

GO        ?= go
BIN       := bin/regie
DATA      ?= ./data
LISTEN    ?= 127.0.0.1:8080
EXAMPLES  := .cache/hl7.fhir.r4.examples-4.0.1
export REGIE_FHIR_EXAMPLES ?= $(CURDIR)/$(EXAMPLES)/package

.PHONY: all build run test test-short bench generate examples vet fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/regie

run: build
	$(BIN) serve --dev --listen $(LISTEN) --data $(DATA)

# The official R4 examples for the round-trip test (npm pack; the tests fall
# back to ../shared/fhir/examples-subset when the registry is out of reach).
examples: $(EXAMPLES)/package/package.json

$(EXAMPLES)/package/package.json:
	@mkdir -p $(EXAMPLES)
	@cd $(EXAMPLES) && (npm pack --silent hl7.fhir.r4.examples@4.0.1 >/dev/null 2>&1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz && rm -f hl7.fhir.r4.examples-4.0.1.tgz) \
		|| echo "note: could not fetch hl7.fhir.r4.examples@4.0.1 with npm; tests use the subset if present"

vet:
	$(GO) vet ./...

test: examples vet
	$(GO) test -count=1 -timeout 25m ./...

test-short:
	$(GO) test -short ./...

# The load benchmark (docs/benchmarks.md, "Load"), then what the
# AuditEvent of every read costs ("Audit") and the store's own benchmarks.
bench:
	$(GO) run ./cmd/regie-bench
	$(GO) test -run '^$$' -bench Audit -benchtime 20000x -count 5 .
	$(GO) test -run '^$$' -bench 'Create|Read|Ingest|AuditAppend' -benchtime 4000x -count 5 ./storage/embedded

# The search benchmark (docs/benchmarks.md, "Search at 1,000,000
# resources"): generates BENCH_N Synthea-shaped resources into a store
# cached under .cache/bench-search (resumable), then measures ingestion,
# index size and the query shapes. BENCH_FLAGS adds flags (-runs, -requests,
# -profile, …); `make bench-search BENCH_N=100000` is a quick run.
BENCH_N     ?= 1000000
BENCH_FLAGS ?=
.PHONY: bench-search
bench-search:
	$(GO) run ./cmd/regie-bench search -n $(BENCH_N) $(BENCH_FLAGS)

generate:
	$(GO) run ./profiles/internal/gen -src ../shared/fhir/definitions/hl7.fhir.r4.core-4.0.1 -out profiles/r4

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .cache
