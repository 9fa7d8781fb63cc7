#!/usr/bin/env sh
# Print a Python 3.12+ interpreter for the project venv: $PYTHON if set, then python3.12/3.13 on
# PATH, then pyenv's. Icechunk 2.x (the archive engine) needs 3.12 or newer; the Lambda image runs 3.12.
set -eu
for candidate in ${PYTHON:-} python3.12 python3.13 python3 \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3 \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if "$path" -c 'import sys; sys.exit(not (3, 12) <= sys.version_info[:2] < (3, 15))' 2>/dev/null; then
        echo "$path"
        exit 0
    fi
done
echo "batglitch needs Python 3.12, 3.13 or 3.14: install one (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3" >&2
exit 1
