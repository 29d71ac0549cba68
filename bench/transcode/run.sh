#!/usr/bin/env bash
# ABR ladder benchmark, side by side in one run on one machine: streamfleet's transcoder
# (bench binary in this folder, driving streamfleet::media::transcode offline) against the
# ffmpeg CLI doing one decode, split, scale and libx264 per rendition with the same x264
# settings. Same 720p30 input, same ladder (480p/1000k, 360p/600k, 240p/300k), preset veryfast.
#
#   bench/transcode/run.sh            # 60 s input, 2 runs
#   RUNS=3 DURATION=30 bench/transcode/run.sh
#   INPUT=my720p.flv bench/transcode/run.sh
#
# Prints a Markdown table: frames/s, CPU seconds, real-time 720p30 sources sustained (fps / 30),
# and the frames/s ratio streamfleet / ffmpeg.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-2}
DURATION=${DURATION:-60}
THREADS=${THREADS:-$(nproc)}
PRESET=${PRESET:-veryfast}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
input=${INPUT:-$work/in720p30.flv}
if [ ! -f "$input" ]; then
  # A publisher-like source: High profile with B-frames, 2 s GOPs, 3 Mb/s, no audio.
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i "testsrc2=size=1280x720:rate=30" -t "$DURATION" \
    -c:v libx264 -preset veryfast -b:v 3000k -g 60 -keyint_min 60 -sc_threshold 0 \
    -pix_fmt yuv420p -an -f flv "$input"
fi
frames=$(ffprobe -v error -select_streams v -count_packets \
  -show_entries stream=nb_read_packets -of csv=p=0 "$input")

echo ">> building the bench driver (release)" >&2
cargo build --release -q
bench="$CARGO_TARGET_DIR/release/streamfleet-transcode-bench"

# The same x264 settings as streamfleet's encoders: ABR at the rung's rate with a 1 s VBV at
# that rate, High profile, no B-frames, no scene cuts, IDRs exactly where the source has
# keyframes (an unbounded GOP otherwise).
x264() { # bitrate
  echo "-c:v libx264 -preset $PRESET -profile:v high -b:v $1 -maxrate $1 -bufsize $1" \
       "-bf 0 -g 1000000 -sc_threshold 0 -force_key_frames source -forced-idr 1"
}
run_ffmpeg() { # x264 threads per encoder ("" = ffmpeg's default, auto)
  local threads=()
  [ -n "$1" ] && threads=(-threads "$1")
  # shellcheck disable=SC2046
  /usr/bin/time -f "%e %U %S" -o "$work/time" \
    ffmpeg -hide_banner -loglevel error -nostdin -i "$input" \
    -filter_complex "[0:v]split=3[a][b][c];[a]scale=854:480[o1];[b]scale=640:360[o2];[c]scale=426:240[o3]" \
    -map "[o1]" $(x264 1000k) "${threads[@]}" -f null - \
    -map "[o2]" $(x264 600k) "${threads[@]}" -f null - \
    -map "[o3]" $(x264 300k) "${threads[@]}" -f null -
  read -r wall user sys < "$work/time"
  echo "$wall $(echo "$user + $sys" | bc)"
}

row() { # name wall cpu
  local fps
  fps=$(echo "scale=2; $frames / $2" | bc)
  printf '| %s | %s | %.2f | %.1f | %.2f |\n' "$1" "$frames" "$fps" "$3" "$(echo "scale=2; $fps / 30" | bc)"
}

echo "input: $input ($frames frames 1280x720), ladder 480p/1000k 360p/600k 240p/300k, preset $PRESET, $(nproc) cores, pool $THREADS"
for run in $(seq "$RUNS"); do
  echo
  echo "run $run"
  echo '| transcoder | frames | frames/s | CPU s | real-time 720p30 sources |'
  echo '|---|---|---|---|---|'
  sf=$("$bench" --input "$input" --threads "$THREADS" --preset "$PRESET")
  sf_wall=$(echo "$sf" | sed -E 's/.*"wall_s":([0-9.]+).*/\1/')
  sf_cpu=$(echo "$sf" | sed -E 's/.*"cpu_s":([0-9.]+).*/\1/')
  row "streamfleet (pool $THREADS, x264 threads=1 per rendition)" "$sf_wall" "$sf_cpu"
  read -r ff_wall ff_cpu <<< "$(run_ffmpeg "")"
  row "ffmpeg CLI (x264 threads auto)" "$ff_wall" "$ff_cpu"
  read -r f1_wall f1_cpu <<< "$(run_ffmpeg 1)"
  row "ffmpeg CLI (x264 threads=1 per rendition)" "$f1_wall" "$f1_cpu"
  echo
  echo "streamfleet: $sf"
  echo "ratio streamfleet/ffmpeg frames/s: $(echo "scale=2; $ff_wall / $sf_wall" | bc)x (threads auto)," \
       "$(echo "scale=2; $f1_wall / $sf_wall" | bc)x (threads=1)"
done
