# stanzad — see README.md. Every target installs what it needs.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   = -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Code off the hot paths — the config parser and its validation (once per
# start or reload), periph's host drivers (set-up and GPIO calls at human
# rates), the HTTP/websocket code paho links for ws:// brokers, the TLS
# handshake's certificate and signature code, and crypto/tls itself (its
# handshake is most of it; a record costs a few more calls, against the
# AES-GCM and the syscall under it), encoding/json (MQTT commands, json-parsed
# serial and file lines, discovery configs: human rates), and
# what serial, file and action devices use at human rates (go.bug.st/serial,
# fsnotify, regexp, os/exec), log/slog (a disabled level costs one
# call more), and our own command handling and agent glue (agent/control,
# agent: commands, reloads, presence; per reading only a few calls in
# the dispatcher), the history and its charts, device parsing, and the
# standard library's net, os, fmt, time and strings (each costs a call
# of a few ns where it was inlined, beside syscalls and allocations that
# cost microseconds), and encoding/xml (inbound stanzas only: acks and
# commands; readings go out as appended bytes), and the modular
# arithmetic of RSA signature checks (crypto/internal/fips140/bigmod: a
# verification at each full handshake, 0.87 → 1.09 ms under qemu-arm;
# P-256's nistec would cost 2.4×, so it keeps inlining), SHA-512 (the
# handshake of SHA-384 suites; records use AEAD only) and encoding/binary
# (a call of a few ns where a byte-order helper was inlined: outbox
# headers, MQTT lengths) and the outbox (Append+Ack is a write and an
# fsync's bookkeeping: 4.0-5.3 µs either way), and the TLS handshake's
# message parsing (cryptobyte), key agreement wrappers (crypto/ecdh: the
# field arithmetic under X25519 and P-256 keeps inlining), HMAC (the
# handshake's key schedule and SCRAM) and PEM (the CA file, once) — is compiled without
# inlining: ~400 KB less on armv7, which keeps the binary in its 8 MiB
# budget (docs/benchmarks.md, decisions §7). The hot paths (xmpp,
# telemetry, AES/ChaCha20, paho) keep it, and so does ML-KEM (the TLS
# key share of every connection: 3x slower without, 0.49 -> 1.44 ms
# under qemu-arm).
GCFLAGS   = -gcflags 'github.com/pelletier/go-toml/v2/...=-l' -gcflags 'periph.io/...=-l' \
            -gcflags 'github.com/gorilla/websocket=-l' -gcflags 'net/http/...=-l' -gcflags 'golang.org/x/net/...=-l' \
            -gcflags 'github.com/stanzad/stanzad/agent/config=-l' -gcflags 'crypto/x509/...=-l' -gcflags 'math/big=-l' \
            -gcflags 'crypto/tls=-l' -gcflags 'encoding/json=-l' \
            -gcflags 'crypto/rsa=-l' -gcflags 'crypto/ecdsa=-l' -gcflags 'crypto/ed25519=-l' \
            -gcflags 'crypto/internal/fips140/rsa=-l' -gcflags 'crypto/internal/fips140/ecdsa=-l' -gcflags 'compress/...=-l' \
            -gcflags 'go.bug.st/...=-l' -gcflags 'github.com/fsnotify/...=-l' -gcflags 'regexp/...=-l' -gcflags 'os/exec=-l' \
            -gcflags 'log/slog=-l' -gcflags 'github.com/stanzad/stanzad/agent/control=-l' -gcflags 'github.com/stanzad/stanzad/agent=-l' \
            -gcflags 'github.com/stanzad/stanzad/agent/history=-l' -gcflags 'github.com/stanzad/stanzad/agent/chart=-l' \
            -gcflags 'github.com/stanzad/stanzad/devices=-l' -gcflags 'net=-l' -gcflags 'os=-l' -gcflags 'fmt=-l' \
            -gcflags 'time=-l' -gcflags 'strings=-l' \
            -gcflags 'crypto/internal/fips140/bigmod=-l' -gcflags 'crypto/internal/fips140/sha512=-l' \
            -gcflags 'encoding/binary=-l' -gcflags 'github.com/stanzad/stanzad/agent/outbox=-l' \
            -gcflags 'vendor/golang.org/x/crypto/cryptobyte/...=-l' -gcflags 'crypto/ecdh=-l' \
            -gcflags 'crypto/internal/fips140/ecdh=-l' -gcflags 'crypto/internal/fips140/hmac=-l' -gcflags 'encoding/pem=-l'
# TAGS leaves optional parts out of a board's binary: nomqtt (the MQTT
# bridge and Home Assistant discovery, paho), nogpio (GPIO and I2C
# devices, periph's host drivers). E.g. make build TAGS=nomqtt,nogpio.
TAGS      =
BUILD     = CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' $(GCFLAGS) -ldflags '$(LDFLAGS)'
# Debian packages the tests, the demo and the benchmarks run against.
PACKAGES  = prosody mosquitto python3-slixmpp ejabberd lintian qemu-user-static

.PHONY: all build deps demo test bench cross package clean memdebug

all: build

build:
	$(BUILD) -o bin/stanzad ./cmd/stanzad
	$(BUILD) -o bin/stanzactl ./cmd/stanzactl

# memdebug: the shipped build plus a report of where its memory goes
# (cmd/stanzad/memdebug.go; not stripped: it reads its own DWARF). E.g.
# STANZAD_BIN=bin/stanzad-memdebug STANZAD_GOROUTINES=/tmp/out.log \
#   go test -tags integration -run X -bench 'IdleMemory/full$$' ./cmd/stanzad
# make memdebug TAGS=memprofile adds heap profiles (STANZAD_HEAPPROFILE);
# it links the runtime's memory profiler, which the shipped build has off.
memdebug:
	CGO_ENABLED=0 $(GO) build -trimpath -tags 'memdebug $(TAGS)' $(GCFLAGS) -ldflags '-checklinkname=0' -o bin/stanzad-memdebug ./cmd/stanzad
	bin/stanzad-memdebug -memdebug-offsets > bin/stanzad-memdebug.offsets

# deps installs Prosody, mosquitto, slixmpp and ejabberd from Debian when missing,
# without starting their system services (policy-rc.d exits 101 during the
# install). Quick and silent when everything is present.
deps:
	@if ! dpkg-query -W -f='$${Status}\n' $(PACKAGES) 2>/dev/null | grep -qv 'install ok installed' \
	    && [ "$$(dpkg-query -W -f='$${Status}\n' $(PACKAGES) 2>/dev/null | wc -l)" -eq $(words $(PACKAGES)) ]; then \
	  exit 0; \
	fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "make deps: need root to apt-get install $(PACKAGES)"; exit 1; \
	fi; \
	echo "installing $(PACKAGES) (system services stay stopped)"; \
	created=; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
	  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created=1; \
	fi; \
	rc=0; \
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(PACKAGES) >/dev/null; } || rc=$$?; \
	[ -n "$$created" ] && rm -f /usr/sbin/policy-rc.d; \
	exit $$rc

demo: deps build
	$(GO) run ./internal/demo -stanzad bin/stanzad -stanzactl bin/stanzactl

# test also checks the reduced build (TAGS=nomqtt,nogpio): vet, the unit
# tests, and the agent end to end against both servers.
test: deps package
	$(GO) vet ./...
	$(GO) vet -tags nomqtt,nogpio ./...
	$(GO) test -race -tags integration -count=1 ./...
	$(GO) test -count=1 -tags nomqtt,nogpio ./...
	$(GO) test -count=1 -tags integration,nomqtt,nogpio -run 'TestIntegrationAgent$$' ./agent/

# bench prints the Go benchmarks (codec, outbox; allocations included) and,
# against a private Prosody: the fault benchmark (time from the server
# accepting again to the session being back, readings lost and duplicated),
# the command round trip and sustained telemetry, each beside a slixmpp peer,
# the outbox's storage writes per reading (SD-card wear), and the shipped
# binary's idle memory (VmRSS, RssAnon, RssFile, PSS after a minute); then
# the fleet: STANZAD_FLEET (default 200) stanzad processes against Prosody
# and a 2-node ejabberd cluster (about 15 minutes; docs/scaling.md).
bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) test -tags integration -run '^$$' -bench IntegrationReconnect -benchtime 3x ./agent/
	$(GO) test -tags integration -run '^$$' -bench IntegrationCommandRTT -benchtime 1x ./agent/
	$(GO) test -tags integration -run '^$$' -bench IntegrationTelemetry -benchtime 1x ./agent/
	$(GO) test -tags integration -run '^$$' -bench IntegrationOutboxWear -benchtime 1x ./agent/
	$(GO) test -tags integration -run '^$$' -bench 'IntegrationIdleMemory|IntegrationMemoryHostile' -benchtime 1x ./cmd/stanzad/
	$(GO) test -tags integration -run '^$$' -bench IntegrationFleet -benchtime 1x -timeout 60m -v ./cmd/stanzad/

# cross builds static binaries for the boards stanzad targets.
CROSS = armv6:arm:6 armv7:arm:7 arm64:arm64: riscv64:riscv64: amd64:amd64:
cross:
	@mkdir -p dist
	@for t in $(CROSS); do \
	  name=$${t%%:*}; rest=$${t#*:}; arch=$${rest%%:*}; arm=$${rest#*:}; \
	  for cmd in stanzad stanzactl; do \
	    echo "$$cmd linux/$$name"; \
	    GOOS=linux GOARCH=$$arch GOARM=$$arm $(BUILD) -o dist/$$cmd-linux-$$name ./cmd/$$cmd || exit 1; \
	  done; \
	done
	@ls -l dist/

# package builds .deb packages from the cross binaries (docs/decisions.md
# §11): armel is armv6 (Raspberry Pi 1 and Zero), armhf armv7.
DEBARCHES = amd64:amd64 arm64:arm64 armhf:armv7 armel:armv6
DEBVERSION = $(shell sh systemd/debian/version.sh)
package: cross
	@rm -f dist/*.deb
	@for t in $(DEBARCHES); do sh systemd/debian/build-deb.sh $${t%%:*} $${t#*:} $(DEBVERSION) dist || exit 1; done

clean:
	rm -rf bin dist
