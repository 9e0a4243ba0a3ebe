#!/bin/sh
# setup.sh — install what is missing (Debian 12, as root), build, and run.
#
#   ./setup.sh            install + build (build/)
#   ./setup.sh demo       ... then run `custody demo`
#   ./setup.sh test       ... then run every test (unit + integration)
#   ./setup.sh asan       build build-asan/ with ASan+UBSan and run every test
#   ./setup.sh valgrind   run the unit suite under valgrind memcheck
#   ./setup.sh fuzz [S]   build build-fuzz/ with clang/libFuzzer, run each target S seconds
#
# Idempotent and quick when everything is already there.
set -eu
cd "$(dirname "$0")"

PKGS="meson ninja-build pkg-config gcc libc6-dev libsodium-dev liblmdb-dev libsqlite3-dev
libcurl4-openssl-dev libjansson-dev libcmocka-dev libmicrohttpd-dev python3 openssl ca-certificates
valgrind util-linux procps scdoc"
# What each part of the project needs beyond PKGS, one line per part so that
# work on one part edits its own line. DEMO_* lines are installed for the
# demo and the tests, TEST_* lines for the tests only.
DEMO_PKGS_alerts="python3-aiosmtpd"
TEST_PKGS_alerts="rsyslog rsyslog-gnutls"
DEMO_PKGS_report=""
TEST_PKGS_report="chromium"
TEST_PKGS_service="systemd mandoc acl bash-completion build-essential debhelper dpkg-dev fakeroot lintian"
TEST_PKGS_trust=""
TEST_PKGS_audit=""
TEST_PKGS_grants=""
TEST_PKGS_broker=""
TEST_PKGS_witness="python3-cryptography rsyslog rsyslog-gnutls"
DEMO_PKGS="$DEMO_PKGS_alerts $DEMO_PKGS_report"
TEST_PKGS="$DEMO_PKGS $TEST_PKGS_alerts $TEST_PKGS_report $TEST_PKGS_service $TEST_PKGS_trust
$TEST_PKGS_audit $TEST_PKGS_grants $TEST_PKGS_broker $TEST_PKGS_witness"
EXTRA_PKGS_fuzz="clang libclang-rt-14-dev"
EXTRA_PKGS_bench="redis-server redis-tools openssh-client"
# custody-alerts' pass (bench section g) sends to a real rsyslog over TLS
EXTRA_PKGS_bench_alerts="rsyslog rsyslog-gnutls"

install_pkgs() {
	missing=""
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "setup: installing:$missing" >&2
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	# Try without refreshing the index first: quick on a machine that has one.
	if ! $SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; then
		$SUDO apt-get update -q >/dev/null
		$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null
	fi
}

build() {
	dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir" >/dev/null || ninja -C "$dir"
}

mode=${1:-build}
# shellcheck disable=SC2086
case "$mode" in
fuzz) install_pkgs $PKGS $EXTRA_PKGS_fuzz ;;
bench) install_pkgs $PKGS $DEMO_PKGS $EXTRA_PKGS_bench $EXTRA_PKGS_bench_alerts ;;
demo) install_pkgs $PKGS $DEMO_PKGS ;;
test|asan|valgrind) install_pkgs $PKGS $TEST_PKGS ;;
*) install_pkgs $PKGS ;;
esac

case "$mode" in
build)
	build build
	echo "setup: built into build/ (custody: build/cli/custody, custodyd: build/broker/custodyd)" ;;
demo)
	build build
	exec build/cli/custody demo ;;
test)
	build build
	exec meson test -C build --print-errorlogs --num-processes 2 ;;
asan)
	build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		exec meson test -C build-asan --print-errorlogs --num-processes 2 ;;
valgrind)
	build build
	exec meson test -C build --setup=valgrind --suite unit --print-errorlogs --num-processes 2 ;;
fuzz)
	# Fuzz targets are meson tests of suite 'fuzz' in their own clang build;
	# each runs for CUSTODY_FUZZ_SECONDS from its seed corpus in tests/fuzz/.
	CC=clang build build-fuzz -Dfuzz=true -Dwerror=false -Db_lundef=false
	CUSTODY_FUZZ_SECONDS=${2:-30} exec meson test -C build-fuzz --suite fuzz --print-errorlogs --num-processes 1 ;;
bench)
	build build
	ninja -C build tests/bench/bench-audit # the audit store's own figures (issue 3)
	exec python3 tests/bench/run.py --build build ;;
*)
	echo "usage: ./setup.sh [build|demo|test|asan|valgrind|fuzz [SECONDS]|bench]" >&2
	exit 2 ;;
esac
