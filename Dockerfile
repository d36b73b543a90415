# Anvil for CI pipelines: `docker run -p 14000:14000 -p 15000:15000 IMAGE`
# starts `anvil dev` (a throwaway SoftHSM2 token, the dev hierarchy, ACME on
# SQLite), listening on every interface of the container. See docs/ci.md.
#
# Stage 1: the Go build. cgo is needed: SQLite (mattn/go-sqlite3) and the
# PKCS#11 loader (miekg/pkcs11, dlopen) are C.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/anvil ./cmd/anvil

# Stage 2: Debian's SoftHSM2 and the binary, nothing else. The same Debian
# release as the build stage, so the C library matches.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends softhsm2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/anvil anvil
COPY --from=build /out/anvil /usr/local/bin/anvil
USER anvil
WORKDIR /var/lib/anvil
# Every `anvil dev` flag can be given as ANVIL_DEV_<FLAG> (CI service
# containers take environment variables, not arguments), and the test knobs
# as Pebble's PEBBLE_* variables. Inside a container, listen on all
# interfaces; the state lives in a temporary directory unless ANVIL_DEV_DIR
# names a volume.
ENV ANVIL_DEV_LISTEN=0.0.0.0:14000 \
    ANVIL_DEV_MANAGEMENT_LISTEN=0.0.0.0:15000
EXPOSE 14000 15000
ENTRYPOINT ["anvil"]
CMD ["dev"]
