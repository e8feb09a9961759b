# Eddy's image: a static binary (CGO_ENABLED=0, -trimpath) on distroless's
# static base, run as nonroot. docker-compose.yml builds it for every eddy
# service. deploy/deploy_test.go runs this file's `go build` line outside
# Docker and checks that the binary it makes is static (no ELF interpreter,
# no shared libraries).
#
#   docker build -t eddy --build-arg VERSION=$(git describe --always) .

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/eddy ./cmd/eddy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/eddy /usr/local/bin/eddy
USER nonroot:nonroot
# http.addr: /metrics, /healthz, /readyz (and eddy ingest's shared HTTP source).
EXPOSE 9180
ENTRYPOINT ["/usr/local/bin/eddy"]
CMD ["--help"]
