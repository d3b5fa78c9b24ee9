#!/usr/bin/env bash
# Run the test suite with the wall clock moved (default: 400 days ahead), to check that no test
# and no library code depends on today's date:
#
#   scripts/any-date.sh            # +400 days
#   scripts/any-date.sh -400d      # 400 days back
#   scripts/any-date.sh +400d tests/retraining -x
#
# libfaketime moves the wall clock (time.time, datetime.now) and leaves the monotonic clock,
# sleeps, timed waits and file times real. It is built here from the source that the
# `libfaketime` wheel (dev extra) vendors, with only clock reads faked:
# - Debian's libfaketime 0.9.10 fails every time.sleep() with EINVAL when the monotonic clock is
#   left real (clock_nanosleep with an absolute monotonic deadline);
# - the wheel's own build also fakes pthread_cond_timedwait, and its bookkeeping of which
#   condition variables use the monotonic clock goes stale when memory is reused: some timed
#   waits then last 400 days (a moved-back clock) or return at once (a moved-ahead one).
set -euo pipefail
offset="${1:-+400d}"
shift || true
src="$(python -c 'import libfaketime, os; print(os.path.join(os.path.dirname(libfaketime.__file__), "vendor", "libfaketime", "src"))')"
if [[ ! -f "$src/libfaketime.c" ]]; then
    echo "libfaketime is not installed: python -m pip install -e '.[dev]'" >&2
    exit 2
fi
cache="${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy"
lib="$cache/libfaketime-clock-only-$(sha256sum "$src/libfaketime.c" | cut -c1-12).so.1"
if [[ ! -f "$lib" ]]; then
    mkdir -p "$cache"
    (cd "$src" && ${CC:-cc} -std=gnu99 -O2 -fPIC -shared -DFAKE_TIMERS -DFAKE_INTERNAL_CALLS \
        -DPREFIX='"/usr/local"' -DLIBDIRNAME='"/lib/faketime"' \
        -Wl,-soname,libfaketime.so.1 -Wl,--version-script=libfaketime.map \
        -o "$lib.tmp" libfaketime.c -lpthread -ldl -lm -lrt) && mv "$lib.tmp" "$lib"
fi
run() { LD_PRELOAD="$lib" FAKETIME="$offset" FAKETIME_DONT_FAKE_MONOTONIC=1 "$@"; }
echo "== tests with the wall clock moved $offset (today is $(run date -u +%F) for them)"
run python -m pytest -p no:cacheprovider "$@"
