# Common loops. `make test` is what CI runs.
GOLANGCI_LINT ?= GOFLAGS= go run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

.PHONY: test short lint bench bench-quick bench-ingest bench-ingest-quick microbench throughput demo build tidy

test:          ## gofmt, vet, go test -race ./... (installs redis-server if missing)
	bash scripts/test.sh

short:         ## quick loop: skips the 200,000-event order test
	go test -short ./...

lint:          ## golangci-lint with .golangci.yml
	$(GOLANGCI_LINT) run --allow-parallel-runners ./...

bench:         ## eddy bench, the standard set: Eddy against a hand-written go-redis consumer (own redis-server)
	go run ./cmd/eddy bench

bench-quick:   ## eddy bench --quick: the smaller set, within about a minute
	go run ./cmd/eddy bench --quick

bench-ingest:  ## eddy bench-ingest: HTTP and MQTT ingest next to eddy produce's path (own redis-server and mosquitto)
	go run ./cmd/eddy bench-ingest

bench-ingest-quick: ## eddy bench-ingest --quick: fewer and shorter runs
	go run ./cmd/eddy bench-ingest --quick

microbench:    ## Go micro-benchmarks of the hot paths
	go test -run '^$$' -bench . -benchmem ./...

throughput:    ## events/s of eddy run on 500,000 pre-filled events (own redis-server)
	bash scripts/throughput.sh 500000

demo:          ## the embedded demo
	go run ./cmd/eddy run -c configs/demo.yaml --log-format console

build:
	go build -o eddy ./cmd/eddy

tidy:
	go mod tidy
