# goldcast: `make run` starts goldcast on embedded defaults, `make test`
# runs every test. Both install what they need (Debian packages, Go
# modules) on a fresh Debian machine.

GO       ?= go
BIN      := bin/goldcast
# The data directory `make run` uses: inside the checkout (a dot directory,
# which go tooling skips), so a demo never
# touches /var/lib/goldcast.
RUN_DATA ?= $(CURDIR)/.goldcast-data
# Debian packages the tests use as real peers and fixtures: command:package.
TEST_TOOLS := rsync:rsync setfacl:acl getfattr:attr setcap:libcap2-bin \
              debootstrap:debootstrap zstd:zstd tar:tar sfdisk:fdisk mkfs.vfat:dosfstools \
              curl:curl ssh-keygen:openssh-client mkfs.ext4:e2fsprogs losetup:mount \
              partx:util-linux unshare:util-linux blkid:util-linux ip:iproute2 \
              busybox:busybox qemu-system-x86_64:qemu-system-x86 \
              udp-sender:udpcast aria2c:aria2 perfdhcp:kea-admin kea-dhcp4:kea-dhcp4-server \
              in.tftpd:tftpd-hpa dnsmasq:dnsmasq dhclient:isc-dhcp-client mkfs.xfs:xfsprogs nft:nftables
# Packages that install no command, found by a file they hold: file:package.
TEST_FILES := /usr/lib/ipxe/ipxe.efi:ipxe /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf \
              /usr/share/doc/busybox-static/copyright:busybox-static
TEST_TIMEOUT ?= 80m

.PHONY: all build run test e2e deps docs bench vet clean

all: build

# build makes a static binary: the same file runs as /init in the netboot
# initramfs (goldcast netboot initramfs).
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/goldcast

# deps installs the missing test tools with apt-get (needs root).
deps:
	@missing=""; for t in $(TEST_TOOLS); do \
	  command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t##*:}"; \
	done; \
	for f in $(TEST_FILES); do \
	  test -e $${f%%:*} || missing="$$missing $${f##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  guard=""; [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; guard=1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; rc=$$?; \
	  [ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi
	$(GO) mod download

# run: start the image server on its defaults (API :8080, rsync :873, or
# 8730 without root) with a sample image in the store; Ctrl-C stops it.
run: build
	@$(BIN) --data $(RUN_DATA) image import /usr/share/doc --image sample --comment "make run sample"
	$(BIN) --data $(RUN_DATA) server

test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# e2e runs the end-to-end tests alone: namespaces, QEMU PXE boots and
# installs, real peers (rsync, udhcpc, dnsmasq, udpcast, aria2c).
e2e: deps
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v ./e2e/

# bench compares goldcast with the tools it replaces (see docs/benchmarks.md).
bench: deps
	GOLDCAST_BENCH=1 $(GO) test -count=1 -timeout 30m -run 'Benchmark' -v ./e2e/ | tee bench.out

docs: build
	$(BIN) gen-man docs/man
	@echo "man pages in docs/man"

vet:
	$(GO) vet ./...

clean:
	rm -rf bin .goldcast-data docs/man
