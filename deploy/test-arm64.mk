# make test-arm64 / make test-armhf: build Floorwatch (with the Cython core) and run the non-service
# tests in a Debian Bookworm root of the Raspberry Pi's architecture, under qemu user emulation.
# Include from the top-level Makefile (include deploy/test-arm64.mk) or run:
#     make -f deploy/test-arm64.mk test-arm64
# Needs root and the Debian packages debootstrap, qemu-user-static, binfmt-support; the first run
# builds the root (minutes), later runs reuse it. See docs/deploy.md ("Proof on arm64").

TEST_ARM64_ROOTS ?= /var/tmp/floorwatch-roots

.PHONY: test-arm64 test-armhf test-arm64-deps

test-arm64-deps:
	@command -v debootstrap >/dev/null && command -v qemu-aarch64-static >/dev/null \
	    || DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap qemu-user-static binfmt-support

test-arm64: test-arm64-deps
	bash deploy/test-arm64.sh --arch arm64 --roots $(TEST_ARM64_ROOTS)

test-armhf: test-arm64-deps
	bash deploy/test-arm64.sh --arch armhf --roots $(TEST_ARM64_ROOTS)
