#!/usr/bin/env bash
# Regenerate the speech corpus: one 16 kHz mono PCM16 WAV per line of sentences.txt, spoken by espeak-ng
# (voice en-us, 150 words per minute) and resampled by sox. The WAVs are committed, so CI never needs these
# tools: run this only to change the corpus (apt-get install -y espeak-ng sox).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/clips"
mkdir -p "$out"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
n=0
while IFS= read -r line; do
  [ -z "$line" ] && continue
  n=$((n + 1))
  name=$(printf '%02d' "$n")
  espeak-ng -v en-us -s 150 -w "$tmp" "$line"
  sox "$tmp" -r 16000 -c 1 -b 16 -e signed-integer "$out/$name.wav"
  printf '%s\n' "$line" > "$out/$name.txt"
done < "$here/sentences.txt"
echo "wrote $n clips to $out"
