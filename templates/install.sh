#!/usr/bin/env bash
# install.sh - install this snp-build release on an AMD EPYC host.
#
# A launcher, not a second installer: it makes sure that the snp-build
# binary the release carries (bin/snp-build) is the one the release's
# builder packed, then runs `bin/snp-build install` on this release with
# your arguments. So there is one installer: the same checks, order, install
# record, messages and exit codes as `snp-build install` (see its --help and
# README's exit code table), and `./install.sh uninstall` is `snp-build
# uninstall`.
#
# Before it runs anything from the release:
#   1. With a trusted key (--trusted-key PUB, else every *.pub in
#      /etc/snp-build/trusted-keys/, under --root DIR when given), minisign
#      must accept SHA256SUMS.minisig as a signature of SHA256SUMS by one of
#      them. A missing minisign is installed with apt-get (live installs as
#      root only; under --dry-run or --root, or when apt-get fails, it exits
#      1 with the command to run).
#   2. bin/snp-build must have the SHA-256 that SHA256SUMS gives it.
# Both are checked on private copies, and the copy checked is the one run.
# snp-build then verifies every other file, the signature's trusted comment,
# the SBOM and the provenance before it changes anything.
#
# Usage: install.sh [uninstall] [OPTION]...    (install.sh --help: all options)
# Exit codes: those of snp-build install; here also 1 (minisign missing),
# 2 (a trusted key cannot be read) and 8 (bin/snp-build or SHA256SUMS not as
# signed).

set -euo pipefail

RELEASE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BINARY_REL=bin/snp-build
E_NOT_VERIFIED=8

die() { # die CODE MESSAGE
    printf 'error: %s\n' "$2" >&2
    exit "$1"
}

COMMAND=install
if [[ ${1:-} == uninstall ]]; then
    COMMAND=uninstall
    shift
fi

# The options that decide what the launcher itself checks; snp-build reads
# them all again.
KEYS=()
ROOT=""
DRY_RUN=0
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
    --trusted-key) KEYS+=("${args[i + 1]:-}") ;;
    --trusted-key=*) KEYS+=("${args[i]#*=}") ;;
    --root) ROOT=${args[i + 1]:-} ;;
    --root=*) ROOT=${args[i]#*=} ;;
    --dry-run) DRY_RUN=1 ;;
    esac
done

# The host's policy, as snp-build reads it: --trusted-key, else config.toml's
# list (TOML this script does not parse, so it refuses), else the directory.
policy="$ROOT/etc/snp-build"
if [[ ${#KEYS[@]} -eq 0 && -f $policy/config.toml ]] &&
    grep -q '^[[:space:]]*trusted-keys' "$policy/config.toml"; then
    die 1 "the host's trusted keys are listed in $policy/config.toml, which install.sh cannot read: pass them with --trusted-key PUB, or run an snp-build you trust: snp-build $COMMAND $RELEASE_DIR; nothing was changed"
fi
if [[ ${#KEYS[@]} -eq 0 && -d $policy/trusted-keys ]]; then
    shopt -s nullglob
    KEYS=("$policy"/trusted-keys/*.pub)
    shopt -u nullglob
fi
for key in "${KEYS[@]}"; do
    [[ -r $key && -f $key ]] ||
        die 2 "cannot read the trusted key $key: No such file or directory
  help: give the .pub file \`snp-build keygen\` wrote beside the secret key"
done

[[ -f $RELEASE_DIR/$BINARY_REL ]] ||
    die 1 "$RELEASE_DIR carries no $BINARY_REL (it was built with [release] installer = \"none\"): install it with an snp-build you trust: snp-build $COMMAND $RELEASE_DIR; nothing was changed"

# Private copies: what is checked is what runs, whatever happens to the
# release directory meanwhile.
PRIVATE=$(mktemp -d "${TMPDIR:-/tmp}/snp-build-install.XXXXXX")
trap 'rm -rf -- "$PRIVATE"' EXIT
cp -- "$RELEASE_DIR/SHA256SUMS" "$PRIVATE/SHA256SUMS" 2>/dev/null ||
    die "$E_NOT_VERIFIED" "$RELEASE_DIR/SHA256SUMS is missing; nothing was changed"
cp -- "$RELEASE_DIR/$BINARY_REL" "$PRIVATE/snp-build"

need_minisign() {
    command -v minisign >/dev/null 2>&1 && return 0
    local apt="apt-get install -y --no-install-recommends minisign"
    if [[ $DRY_RUN -eq 1 || -n $ROOT || $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
        die 1 "minisign is needed to check the release's signature before running its snp-build, and is not installed: run \`$apt\` (or your distribution's minisign package), then again; nothing was changed"
    fi
    echo "install.sh: installing minisign to check the release's signature: $apt" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive $apt -qq; } >&2 ||
        die 1 "\`$apt\` failed (is the package mirror reachable?): install minisign, then run this again; nothing else was changed"
}

if [[ ${#KEYS[@]} -gt 0 ]]; then
    need_minisign
    cp -- "$RELEASE_DIR/SHA256SUMS.minisig" "$PRIVATE/SHA256SUMS.minisig" 2>/dev/null ||
        die "$E_NOT_VERIFIED" "the release is unsigned (no SHA256SUMS.minisig) but a signature by a trusted key is required (${KEYS[*]}); nothing was changed"
    signed=""
    for key in "${KEYS[@]}"; do
        if minisign -Vqm "$PRIVATE/SHA256SUMS" -x "$PRIVATE/SHA256SUMS.minisig" -p "$key" 2>/dev/null; then
            signed=$key
            break
        fi
    done
    [[ -n $signed ]] ||
        die "$E_NOT_VERIFIED" "SHA256SUMS.minisig is not a valid signature of SHA256SUMS by a trusted key (${KEYS[*]}); nothing was changed"
fi

# SHA256SUMS lines are "<sha256>  <path>"; exactly one names the binary.
want=$(awk -v f="$BINARY_REL" '$2 == f || $2 == "*" f { print $1 }' "$PRIVATE/SHA256SUMS")
have=$(sha256sum "$PRIVATE/snp-build" | cut -d' ' -f1)
[[ $(wc -w <<<"$want") -eq 1 && ${want,,} == "$have" ]] ||
    die "$E_NOT_VERIFIED" "$RELEASE_DIR/$BINARY_REL does not match SHA256SUMS (listed: ${want:-nothing}, found: $have); nothing was changed"
chmod 0700 "$PRIVATE/snp-build"

# Run the checked copy: opened as fd 3 and deleted with the directory,
# then executed through /proc (as fexecve does), so no copy is left
# behind, whatever the install's outcome, and the exit code is its own.
# The advice an install prints (to finish, to undo) names this script.
export SNP_BUILD_LAUNCHED_BY="$RELEASE_DIR/install.sh"
exec 3<"$PRIVATE/snp-build"
rm -rf -- "$PRIVATE"
trap - EXIT
if [[ $COMMAND == install ]]; then
    exec -a snp-build /proc/self/fd/3 install "$@" "$RELEASE_DIR"
fi
exec -a snp-build /proc/self/fd/3 uninstall "$@"
