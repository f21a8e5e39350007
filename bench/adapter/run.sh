#!/usr/bin/env bash
# UDP drop benchmark: podblocks statsd adapter vs statsd_exporter (built from its Go module in this
# nested bench module), same mapping config, same sender, alternating runs, medians and ratios.
# Usage: bench/adapter/run.sh [-runs N] [-duration 5s] [-rates 100000,...,0] [-csv DIR]
# The medians also go, as CSV for bench/plots.sh, to bench/results/adapter-{processed,drop}.grouped.csv
# (-csv DIR elsewhere, -csv "" not at all).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
(cd "$here/.." && go build -o "$bin/statsd_exporter" github.com/prometheus/statsd_exporter)
(cd "$here/../.." && go build -o "$bin/statsd-adapter" ./examples/statsd-adapter)
(cd "$here/.." && go build -o "$bin/adapter-bench" ./adapter)
echo "machine: $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), statsd_exporter $("$bin/statsd_exporter" --version 2>&1 | head -1)"
mkdir -p "$here/../results"
cd "$here"
"$bin/adapter-bench" -statsd_exporter "$bin/statsd_exporter" -podblocks "$bin/statsd-adapter" -mapping "$here/mapping.yml" -csv "$here/../results" "$@"
