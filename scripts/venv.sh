# Sourced by ./membot and scripts/test: make .venv (Python 3.13+) and keep the package installed in it.
# POSIX sh; needs only a Python 3.13 interpreter (python3.13, pyenv, python3 or uv) and the package index.

membot_root=$(cd "$(dirname "$0")" && while [ ! -f pyproject.toml ] && [ "$PWD" != / ]; do cd ..; done && pwd)
membot_venv="$membot_root/.venv"

membot_say() {
    printf 'membot: %s\n' "$*" >&2
}

# Print a command that runs a Python >= 3.13, or "uv" when only uv can provide one.
membot_find_python() {
    # Run each candidate: a pyenv shim exists even when its version is not selected.
    for candidate in python3.13 python3.14 python3; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 13))' >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        # Like PYENV_VERSION=3.13.0 python, with the newest installed 3.13+ whatever its patch level.
        version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[3-9]|[2-9][0-9])(\.[0-9]+)?$' |
            sort -t. -k1,1n -k2,2n -k3,3n | tail -n 1)
        if [ -n "$version" ] && [ -x "$(pyenv root)/versions/$version/bin/python" ]; then
            printf '%s\n' "$(pyenv root)/versions/$version/bin/python"
            return 0
        fi
    fi
    if command -v uv >/dev/null 2>&1; then
        printf 'uv\n'
        return 0
    fi
    return 1
}

membot_create_venv() {
    python=$(membot_find_python) || {
        membot_say "no Python 3.13 found: install python3.13 (or pyenv install 3.13, or uv) and rerun"
        exit 1
    }
    membot_say "creating .venv with $python"
    if [ "$python" = uv ]; then
        uv venv --seed --python 3.13 "$membot_venv" >&2
    else
        "$python" -m venv "$membot_venv"
    fi
}

# membot_ensure_venv EXTRAS: install the package (editable, with EXTRAS) when it is missing
# or pyproject.toml changed since the last install with those extras.
membot_ensure_venv() {
    extras=$1
    if [ ! -x "$membot_venv/bin/python" ]; then
        membot_create_venv
    elif ! "$membot_venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
        membot_say "$membot_venv was made with an older Python; remove it and rerun"
        exit 1
    fi
    stamp="$membot_venv/.membot-installed${extras:+-$extras}"
    wanted=$("$membot_venv/bin/python" -c \
        'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
        "$membot_root/pyproject.toml")
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
        membot_say "installing membot${extras:+[$extras]} into .venv (first run, or pyproject.toml changed)"
        "$membot_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --editable "$membot_root${extras:+[$extras]}"
        printf '%s\n' "$wanted" >"$stamp"
    fi
}
