#!/usr/bin/env bash
# What `sam local invoke FUNCTION -e EVENT` does, without Docker: the function's bootstrap run by
# AWS's official Lambda Runtime Interface Emulator (the one inside sam local invoke's container,
# shipped in the SAM CLI package), with the environment template.yaml gives the function.
#
#   bash tests/invoke.sh FUNCTION EVENT [--native] [--env-vars FILE]
#                        [--parameter-overrides NAME=VALUE ...]
#
# FUNCTION: TokenFunction or token; EVENT: a file such as events/token.json, or - for stdin.
# By default it runs what `sam build` made (.aws-sam/build/<Function>/bootstrap, arm64, under
# qemu-user); --native runs an x86_64 `cargo lambda build` instead. The result goes to stdout,
# the emulator's and the function's log to stderr. How the template's !Ref, !Sub and !If become
# local values (table, KMS key or key file, emulator endpoints): tests/rie.py.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.deps"

# shellcheck source=tests/emulators.sh
source "$ROOT/tests/emulators.sh"

if (($# == 0)) || [[ "$1" == --help || "$1" == -h ]]; then
    sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    (($# > 0)) || exit 2
    exit 0
fi
install_tools
if [[ " $* " != *" --native "* ]]; then
    install_apt_packages
fi
exec "$DEPS/tools/bin/python" "$ROOT/tests/rie.py" invoke "$@"
