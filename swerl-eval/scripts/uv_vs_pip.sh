#!/bin/bash
# uv vs pip building the flask 2.3 environment (Python 3.11, upstream's requirement groups),
# from the requirement files a harness run left in its cache (edit the paths to yours).
set -e
R=$(ls /tmp/lite/cache/envs/pallets__flask-2.3-py3.11-*.requirements-0.txt | head -1); R=${R%-0.txt}
PY=$HOME/.pyenv/versions/3.11.7/bin/python3.11
UV=/tmp/lite/cache/tools/uv/bin/uv
t() { local s=$(date +%s.%N); "$@" > /dev/null 2>&1; echo "$(echo "$(date +%s.%N) - $s" | bc)"; }
uvbuild() { rm -rf $1; $UV venv -q --seed --python $PY $1 && for i in 0 1 2; do $UV pip install -q --compile-bytecode --python $1/bin/python -r $R-$i.txt; done; }
pipbuild() { rm -rf $1; $PY -m venv $1 && $1/bin/python -m pip install -q -U pip && for i in 0 1 2; do $1/bin/python -m pip install -q -r $R-$i.txt; done; }
rm -rf uvc pipc
echo "uv cold:  $(UV_CACHE_DIR=$PWD/uvc t uvbuild e1)"
echo "pip cold: $(PIP_CACHE_DIR=$PWD/pipc t pipbuild e2)"
echo "uv warm:  $(UV_CACHE_DIR=$PWD/uvc t uvbuild e1)"
echo "pip warm: $(PIP_CACHE_DIR=$PWD/pipc t pipbuild e2)"
