#!/usr/bin/env bash
# Regenerates assets/DejaVuSans-subset.ttf (about 28 KiB) from the full DejaVu Sans.
# Needs: fontTools (pip install fonttools) and DejaVuSans.ttf, e.g. from the Debian
# package fonts-dejavu-core (apt-get download fonts-dejavu-core; dpkg-deb -x ...).
# Usage: make_font_subset.sh /path/to/DejaVuSans.ttf [out.ttf]
set -euo pipefail
src=${1:?path to DejaVuSans.ttf}
out=${2:-"$(dirname "$0")/DejaVuSans-subset.ttf"}
pyftsubset "$src" \
  --unicodes="U+0020-007E,U+00A0-00FF,U+0391-03A9,U+03B1-03C9,U+2010-2027,U+2030,U+2032,U+2033,U+2039,U+203A,U+2044,U+20AC,U+2122,U+2190-2193,U+2212,U+2215,U+221E,U+2248,U+2260,U+2264,U+2265" \
  --no-hinting --layout-features='kern' --output-file="$out"
