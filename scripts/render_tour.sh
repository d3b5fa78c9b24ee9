#!/usr/bin/env bash
# Execute examples/tour.ipynb in a temporary folder and render it to HTML (needs the dev extra:
# nbconvert), to read the notebook as a user sees it. Usage: scripts/render_tour.sh [OUTPUT_DIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/build/tour}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$repo/examples/tour.ipynb" "$work/"
(cd "$work" && jupyter nbconvert --to html --execute tour.ipynb --output-dir "$out")
echo "$out/tour.html"
