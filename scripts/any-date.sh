#!/usr/bin/env bash
# Run the test suite with the wall clock moved (default: 400 days ahead), to check that no test
# and no library code depends on today's date:
#
#   scripts/any-date.sh            # +400 days
#   scripts/any-date.sh -400d      # 400 days back
#   scripts/any-date.sh +400d tests/retraining -x
#
# libfaketime moves the wall clock and leaves the monotonic clock real
# (FAKETIME_DONT_FAKE_MONOTONIC=1), so timed waits keep working. It uses the libfaketime that
# the `libfaketime` wheel (in the dev extra) vendors: Debian's 0.9.10 fails every
# time.sleep() with EINVAL in that mode (clock_nanosleep with an absolute monotonic deadline).
set -euo pipefail
offset="${1:-+400d}"
shift || true
lib="$(python -c 'import libfaketime, os; print(os.path.join(os.path.dirname(libfaketime.__file__), "vendor", "libfaketime", "src", "libfaketime.so.1"))')"
if [[ ! -f "$lib" ]]; then
    echo "libfaketime is not installed: python -m pip install -e '.[dev]'" >&2
    exit 2
fi
echo "== tests with the wall clock moved $offset ($(LD_PRELOAD="$lib" FAKETIME="$offset" FAKETIME_DONT_FAKE_MONOTONIC=1 date -u +%F))"
LD_PRELOAD="$lib" FAKETIME="$offset" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_NO_CACHE=1 \
    python -m pytest -p no:cacheprovider "$@"
