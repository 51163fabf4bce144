#!/usr/bin/env bash
# Pastes a chapter's current output into its README, between the markers
#   <!-- output: make chapter N=.. -->  and  <!-- end output -->
# Usage: Chapters/paste-output.sh 04   (after `swift build`)
set -euo pipefail
cd "$(dirname "$0")/.."
number=$(printf '%02d' "$((10#$1))")
dir=$(ls -d Chapters/"$number"-*/ | head -n 1)
slug=$(basename "$dir")
output=$(mktemp)
".build/debug/ch$slug" > "$output" || { echo "ch$slug exited non-zero; not pasting" >&2; exit 1; }
readme="$dir/README.md"
awk -v out="$output" '
  /^<!-- output:/ { print; print "```text"; while ((getline line < out) > 0) print line; print "```"; skip = 1; next }
  /^<!-- end output -->/ { skip = 0 }
  !skip { print }
' "$readme" > "$readme.new"
mv "$readme.new" "$readme"
rm -f "$output"
echo "pasted the output of ch$slug into $readme"
