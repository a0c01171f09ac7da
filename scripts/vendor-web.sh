#!/usr/bin/env bash
# Refresh the web app's vendored browser assets from the npm registry (run by hand when bumping a
# version; the files are committed, so setup, CI and the app itself never need the network).
# Each package is pinned by version and by the sha256 of its tarball: a changed tarball fails.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=interfaces/web/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# uPlot (MIT): the small canvas chart library behind the sentiment line and the queue charts.
UPLOT_VERSION=1.6.32
UPLOT_SHA256=4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d

(cd "$work" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null)
echo "$UPLOT_SHA256  $work/uplot-$UPLOT_VERSION.tgz" | sha256sum --check --quiet
tar -xzf "$work/uplot-$UPLOT_VERSION.tgz" -C "$work"
cp "$work/package/dist/uPlot.iife.min.js" "$work/package/dist/uPlot.min.css" "$dest/"
cp "$work/package/LICENSE" "$dest/uPlot.LICENSE"
echo "uplot $UPLOT_VERSION -> $dest"
