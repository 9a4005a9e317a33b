#!/usr/bin/env bash
# install.sh - install an snp-build release on an AMD EPYC host.
#
# Run it from anywhere: it finds the release files next to itself (the
# directory holding this script is the release root). It keeps the same
# contract as `snp-build install`: the same checks, order, exit codes and
# install record, so `snp-build uninstall` undoes what it did.
#
# First it plans and checks everything, changing nothing:
#   1. Verifies the release against SHA256SUMS, as strictly as
#      `snp-build install`: every listed file present with its hash (no
#      symbolic links), every line a plain relative path, every file of the
#      release listed (SHA256SUMS.minisig, the signature, is the one file
#      it does not list).
#   2. Checks the signature when a trusted key is given (--trusted-key) or
#      installed (*.pub in /etc/snp-build/trusted-keys/, under --root DIR
#      when given): `minisign -V` must accept SHA256SUMS.minisig with one of
#      them. Without a trusted key it says that the signature was not
#      verified. Keys listed only in /etc/snp-build/config.toml ([install]
#      trusted-keys) cannot be read here: it refuses and says to pass them
#      with --trusted-key. The signature's trusted comment
#      (release:NAME ... manifest_sha256:HEX) must name this release: the
#      directory's name and manifest.json's "release" and SHA-256, so a
#      renamed old release cannot pass for a new one.
#   3. Detects the distribution from os-release (ID, or any word of ID_LIKE,
#      equal to "debian" means Debian-like, which uses .deb packages; any
#      other distribution uses .rpm packages). With --root DIR,
#      DIR/etc/os-release is used when it exists, /etc/os-release otherwise.
#   4. Picks the host kernel image package from linux/host/: the one
#      linux-image-*.deb that is not a -dbg package, or the one
#      kernel-<version>.rpm. Headers, devel, libc-dev and debug packages
#      are never installed.
#   5. Works out the packages that provide the shared libraries the
#      release's usr/local/bin/qemu-system-x86_64 lacks (`ldd` "not found"):
#      Debian package names mapped from the sonames, or on rpm systems the
#      sonames themselves (`dnf install 'libfoo.so.1()(64bit)'`).
#   6. Checks every tool it will need, and on a live system without --yes
#      asks for confirmation on the terminal (refusing without one).
#   7. Refuses a release dated before the one the install record says is
#      installed (names are snp-release-YYYY-MM-DD), unless
#      --allow-downgrade.
# Then, on the live system, it changes the system in this order, writing
# the install record /var/lib/snp-build/installed.json before the first
# change and again after each step:
#   a. dependencies: `apt-get update`, then `apt-get install -y
#      --no-install-recommends PKG...` (rpm: `dnf install -y
#      --setopt=install_weak_deps=False SONAME()(64bit)...`);
#   b. the kernel package: `dpkg -i` (rpm: `dnf install -y`);
#   c. kvm.conf as /etc/modprobe.d/kvm.conf. A different existing file is
#      kept as kvm.conf.bak-<UTC YYYYmmddTHHMMSSZ> beside it (modprobe only
#      reads *.conf files); an identical one is left alone.
# and checks that the host can boot the new kernel: its initramfs exists
# (when the kernel uses one) and the boot loader has an entry for it. Only
# then does it tell you to reboot into it; otherwise it names what is
# missing and the command that makes it.
#
# A step that fails stops the install (exit 9): the record says what was
# done, and the message names the command that finishes the install and
# the one that undoes it (`snp-build uninstall --yes`).
#
# Usage: install.sh [--dry-run] [--yes] [--root DIR] [--trusted-key PUB]...
#                   [--allow-downgrade] [-h|--help]
#   --dry-run    print every action instead of doing it; changes nothing.
#   -y, --yes    do not ask for confirmation (needed without a terminal).
#   --trusted-key PUB
#                install only if SHA256SUMS is signed by this minisign public
#                key (repeatable; needs the minisign tool).
#   --root DIR   staging install into DIR (made when missing): the
#                package is unpacked into DIR (dpkg-deb -x, or rpm2cpio|cpio),
#                kvm.conf goes to DIR/etc/modprobe.d/; no package maintainer
#                scripts run and no dependencies are installed (they are
#                printed instead). Does not need root.
#   --allow-downgrade
#                install even a release older than the installed one.
#   -h, --help   show this help.
# Without --dry-run or --root it must run as root.
#
# Exit codes (the same for `snp-build install` and `snp-build uninstall`):
#   0  installed (or a dry run that found nothing wrong)
#   1  refused before any change: not root, not confirmed, no or several
#      kernel packages, a tool or file missing
#   2  usage error (unknown option, missing option value), or no terminal
#      to confirm on and no --yes
#   8  the release failed verification (checksums, or a signature not by a
#      trusted key or for another release); nothing was changed
#   9  a step failed after the system was changed; the install record says
#      what was done
#   10 the release is older than the installed one (and no
#      --allow-downgrade); nothing was changed

set -euo pipefail

PROG=install.sh
RELEASE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KVM_CONF_NAME=kvm.conf
QEMU_REL=usr/local/bin/qemu-system-x86_64
RECORD_REL=var/lib/snp-build/installed.json
E_NOT_VERIFIED=8
E_INCOMPLETE=9
E_INTERRUPTED=130
INTERRUPTED=0   # set by the INT/TERM trap once steps run
E_DOWNGRADE=10

DRY_RUN=0
YES=0
ALLOW_DOWNGRADE=0
ROOT=""          # staging root ("" = the live system)
DISTRO=""        # "debian" or "rpm"
PKG_FORMAT=""    # "deb" or "rpm"
PKG=""           # the host kernel image package (path relative to RELEASE_DIR)
PKG_NAME=""      # its package name
PKG_VERSION=""
PKG_ID=""        # what dpkg (name) or rpm (name-version.arch) calls it
PKG_COPY=""      # the verified private copy of the package
KVM_COPY=""      # the verified private copy of kvm.conf
TRUSTED_KEYS=()  # --trusted-key files
declare -A LISTED=() # SHA256SUMS: relative path -> sha256 (after verification)
PRIVATE=""       # private copies of what gets installed
SIG_NAME=SHA256SUMS.minisig
KERNEL_RELEASE=""
MISSING_LIBS=()  # sonames the release's QEMU lacks here
DEP_PKGS=()      # the packages that provide them
DEPS_RUN=0       # this install installs them
KVM_ACTION=""    # create, replace or unchanged
KVM_BACKUP=""    # where a different existing kvm.conf goes (replace)
# The record's state, written by write_record.
INSTALLED_AT=""
PKG_PREINSTALLED=false
KVM_SHA=""
REC_BACKUP=null  # JSON: the backup path as seen on the target, or null
REC_CREATED=false
DEPS_INSTALLED=()
EARLIER=()       # kernel packages earlier installs put here (record's earlier_packages)
KVM_EARLIER_SHA=""       # the kvm.conf an earlier install wrote (its step done)
KVM_EARLIER_BACKUP=null  # and what that install recorded of the original
KVM_EARLIER_CREATED=false
AGAIN=""         # the command that finishes the install
UNDO=""          # the command that undoes it
declare -A STEP_STATE=() STEP_NOTE=() STEP_CMD=()
DONE=()          # what was done, for a failure's message

# Debian packages for the libraries QEMU links, by soname. snp-build fills
# this in from its own table (src/host/install/deps.rs) when it packs the
# release, so both installers map sonames the same way; a soname not in it
# brings qemu-system-x86, which depends on all of them.
declare -A SONAME_PACKAGES=() # @soname-packages@

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

say() {
    printf '%s: %s\n' "$PROG" "$*"
}

die() { # die CODE MESSAGE...
    local code=$1
    shift
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit "$code"
}

# One argument as shell input: bare when it is plainly safe, else in single quotes.
shell_quote() {
    if [[ "$1" =~ ^[A-Za-z0-9_./,:=+@%-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# Prints a command as a shell-quoted line.
quote_cmd() {
    local out="" arg
    for arg in "$@"; do
        out+="$(shell_quote "$arg") "
    done
    printf '%s\n' "${out% }"
}

# run CMD...: runs CMD, or in a dry run prints what would run.
run() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf '%s: [dry-run] would run: %s\n' "$PROG" "$(quote_cmd "$@")"
    else
        printf '%s: running: %s\n' "$PROG" "$(quote_cmd "$@")"
        "$@"
    fi
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --dry-run) DRY_RUN=1 ;;
            -y | --yes) YES=1 ;;
            --allow-downgrade) ALLOW_DOWNGRADE=1 ;;
            --root)
                [[ $# -ge 2 && -n "$2" ]] || die 2 "--root needs a directory (see --help)"
                ROOT=$2
                shift
                ;;
            --root=*)
                ROOT=${1#--root=}
                [[ -n "$ROOT" ]] || die 2 "--root needs a directory (see --help)"
                ;;
            --trusted-key)
                [[ $# -ge 2 && -n "$2" ]] || die 2 "--trusted-key needs a .pub file (see --help)"
                TRUSTED_KEYS+=("$2")
                shift
                ;;
            --trusted-key=*)
                TRUSTED_KEYS+=("${1#--trusted-key=}")
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die 2 "unknown option '$1' (see --help)" ;;
        esac
        shift
    done
    if [[ -n "$ROOT" ]]; then
        # As `cargo install --root`: a missing staging root is made, once
        # the release is verified (a dry run only says so).
        [[ ! -e "$ROOT" || -d "$ROOT" ]] || die 2 "--root $ROOT: not a directory (give a directory to unpack into; it is made when missing)"
        ROOT="$(realpath -m -- "$ROOT")"
        [[ "$ROOT" != / ]] || die 2 "--root / is the live system: drop --root for a live install (as root, with its checks and confirmation)"
    fi
}

make_root() {
    [[ -n "$ROOT" && ! -d "$ROOT" ]] || return 0
    if [[ $DRY_RUN -eq 1 ]]; then
        say "[dry-run] would create the staging root $ROOT"
    else
        say "creating the staging root $ROOT"
        mkdir -p -- "$ROOT"
    fi
}


# Step 1b: with a trusted key (given, or installed on the target), only a
# release whose SHA256SUMS it signed goes on.
verify_signature() {
    local keys=("${TRUSTED_KEYS[@]}") key comment dir="$ROOT/etc/snp-build/trusted-keys"
    local sig="$PRIVATE/$SIG_NAME"
    # The same order as snp-build: --trusted-key, else config.toml's list
    # (which this script cannot read, so it refuses), else the directory.
    if [[ ${#keys[@]} -eq 0 && -f "$ROOT/etc/snp-build/config.toml" ]] &&
        grep -q '^[[:space:]]*trusted-keys' "$ROOT/etc/snp-build/config.toml"; then
        die 1 "the host's trusted keys are listed in $ROOT/etc/snp-build/config.toml, which install.sh cannot read: pass them with --trusted-key PUB, or use 'snp-build install'; nothing was changed"
    fi
    if [[ ${#keys[@]} -eq 0 && -d "$dir" ]]; then
        shopt -s nullglob
        keys=("$dir"/*.pub)
        shopt -u nullglob
    fi
    if [[ ${#keys[@]} -eq 0 ]]; then
        if [[ -f "$sig" ]]; then
            say "warning: the release is signed, but no trusted key is given (--trusted-key) or installed ($dir): the signature was NOT verified"
        else
            say "warning: the release is unsigned and no trusted key is configured: its origin was NOT verified"
        fi
        return 0
    fi
    for key in "${keys[@]}"; do
        [[ -f "$key" ]] || die 1 "trusted key $key: no such file"
    done
    command -v minisign >/dev/null 2>&1 ||
        die 1 "cannot verify the signature: minisign is not installed (Debian: apt-get install minisign); nothing was changed"
    [[ -f "$sig" ]] ||
        die "$E_NOT_VERIFIED" "the release is unsigned (no $SIG_NAME) but a signature by a trusted key is required (${keys[*]}); nothing was changed"
    for key in "${keys[@]}"; do
        # -Q: only the trusted comment, printed once it is verified too.
        if comment=$(minisign -Vm "$PRIVATE/SHA256SUMS" -x "$sig" -p "$key" -Q 2>/dev/null); then
            check_signed_release "$key" "$comment"
            say "signature verified: SHA256SUMS is signed by $key for ${RELEASE_DIR##*/}"
            return 0
        fi
    done
    die "$E_NOT_VERIFIED" "$SIG_NAME is not a valid signature of SHA256SUMS by a trusted key (${keys[*]}); nothing was changed"
}

# Step 1c: the trusted comment (words key:value) names the release this
# is, as snp-build checks it (src/host/verify.rs): release:NAME is this
# directory's name and manifest.json's "release"; manifest_sha256:HEX, when
# there (releases signed before snp-build wrote it have none; SHA256SUMS
# covers their manifest all the same), is manifest.json's SHA-256.
check_signed_release() { # check_signed_release KEY COMMENT
    local key=$1 comment=$2 word k signed want manifest named name=${RELEASE_DIR##*/}
    local -a words=()
    local -A said=()
    read -r -a words <<<"$comment"
    for word in "${words[@]}"; do
        [[ $word == ?*:* ]] || continue
        k=${word%%:*}
        [[ -z "${said["$k"]+x}" ]] ||
            other_release "$key" "'$comment'" "its trusted comment gives $k: twice"
        said["$k"]=${word#*:}
    done
    signed=${said[release]:-}
    [[ -n "$signed" ]] ||
        other_release "$key" "'$comment'" "its trusted comment names no release (release:NAME)"
    [[ "$name" == "$signed" ]] || other_release "$key" "$signed" "the directory is named $name"
    listed_in_sums manifest.json || other_release "$key" "$signed" "there is no manifest.json"
    want=${said[manifest_sha256]:-}
    want=${want,,}
    if [[ -n "$want" && "$want" != "${LISTED[manifest.json]}" ]]; then
        other_release "$key" "$signed" "its manifest.json has SHA-256 ${LISTED[manifest.json]}, the signature names $want"
    fi
    private_copy manifest.json manifest
    # Top-level keys are indented by two spaces in snp-build's manifest.
    named=$(sed -n 's/^  "release": "\(.*\)",\{0,1\}$/\1/p' "$manifest" | head -n 1)
    [[ "$named" == "$signed" ]] ||
        other_release "$key" "$signed" "its manifest.json names ${named:+the release }${named:-no release}"
}

other_release() { # other_release KEY SIGNED WHY
    die "$E_NOT_VERIFIED" "$RELEASE_DIR: signed by $1 for $2, but $3; nothing was changed
  help: these files are not $2 as it was signed (renamed, or the manifest replaced since): if they are $2, install them under that name ($2/); otherwise get the release you want again from its builder"
}


# Step 1: nothing happens before the release is exactly what SHA256SUMS
# says (the same rules as `snp-build install`): every line is
# "<sha256>  <relative path>" with no "..", "." or empty component and no
# path twice; every listed file is a regular file, with no symbolic link on
# its way, and has its hash; every file of the release is listed.
verify_checksums() {
    local sums="$RELEASE_DIR/SHA256SUMS" line hash name path rel actual
    local bad=() unlisted=()
    [[ -f "$sums" && ! -L "$sums" ]] || die "$E_NOT_VERIFIED" "$sums is missing: cannot verify the release; nothing was changed"
    # SHA256SUMS and its signature are read once, into private copies: the
    # signature is checked on the very list the hashes come from.
    cp -- "$sums" "$PRIVATE/SHA256SUMS" || die 1 "cannot copy $sums"
    if [[ -L "$RELEASE_DIR/$SIG_NAME" ]]; then
        bad+=("$SIG_NAME: a symbolic link")
    elif [[ -f "$RELEASE_DIR/$SIG_NAME" ]]; then
        cp -- "$RELEASE_DIR/$SIG_NAME" "$PRIVATE/$SIG_NAME" || die 1 "cannot copy $SIG_NAME"
    fi
    sums="$PRIVATE/SHA256SUMS"
    while IFS= read -r line || [[ -n "$line" ]]; do
        [[ -n "${line//[[:space:]]/}" ]] || continue
        if [[ ! "$line" =~ ^([0-9a-fA-F]{64})\ [\ *](.+)$ ]]; then
            bad+=("not a checksum line: $line")
            continue
        fi
        hash=${BASH_REMATCH[1],,}
        name=${BASH_REMATCH[2]}
        name=${name#./}
        if ! safe_relative "$name"; then
            bad+=("not a path inside the release: $name")
        elif [[ -n "${LISTED[$name]+x}" ]]; then
            bad+=("listed twice: $name")
        else
            LISTED[$name]=$hash
        fi
    done <"$sums"
    for name in "${!LISTED[@]}"; do
        if symlink_on_the_way "$name"; then
            bad+=("$name: a symbolic link")
        elif [[ ! -f "$RELEASE_DIR/$name" ]]; then
            bad+=("$name: missing")
        else
            actual=$(sha256sum -- "$RELEASE_DIR/$name")
            [[ "${actual%% *}" == "${LISTED[$name]}" ]] || bad+=("$name: FAILED (modified)")
        fi
    done
    while IFS= read -r -d '' path; do
        rel=${path#"$RELEASE_DIR"/}
        if [[ "$rel" != SHA256SUMS && "$rel" != "$SIG_NAME" && -z "${LISTED[$rel]+x}" ]]; then
            unlisted+=("$rel")
        fi
    done < <(find "$RELEASE_DIR" -mindepth 1 ! -type d -print0)
    if [[ ${#bad[@]} -gt 0 ]]; then
        printf '%s: error: SHA256SUMS verification failed in %s; nothing was changed.\n' "$PROG" "$RELEASE_DIR" >&2
        printf '%s: bad or missing file: %s\n' "$PROG" "${bad[@]}" >&2
        exit "$E_NOT_VERIFIED"
    fi
    if [[ ${#unlisted[@]} -gt 0 ]]; then
        printf '%s: error: not listed in SHA256SUMS (refusing an unverified release; nothing was changed): %s\n' "$PROG" "${unlisted[@]}" >&2
        exit "$E_NOT_VERIFIED"
    fi
    say "verified every file of the release against SHA256SUMS"
}


# Copies the release file NAME into the private directory, checks the
# copy against SHA256SUMS again and sets VAR to its path (in a dry run, to
# the release's file). What is installed is this copy, so a file swapped
# in the release after verification is never installed. Run in the main
# shell before the first change, so its refusals stop everything.
private_copy() { # private_copy NAME VAR
    local name=$1 copy actual
    if [[ $DRY_RUN -eq 1 ]]; then
        printf -v "$2" '%s' "$RELEASE_DIR/$name"
        return 0
    fi
    copy="$PRIVATE/${name##*/}"
    cp -- "$RELEASE_DIR/$name" "$copy" || die 1 "cannot copy $RELEASE_DIR/$name to $copy; nothing was changed"
    actual=$(sha256sum -- "$copy")
    [[ "${actual%% *}" == "${LISTED[$name]:-}" ]] ||
        die "$E_NOT_VERIFIED" "$name changed after it was verified; nothing was changed"
    printf -v "$2" '%s' "$copy"
}

# The private directory (mode 0700, removed on exit): the copies of
# SHA256SUMS, its signature and what gets installed.
make_private() {
    PRIVATE=$(mktemp -d "${TMPDIR:-/tmp}/snp-install.XXXXXX")
    trap 'rm -rf -- "$PRIVATE"' EXIT
}

# True when NAME is a relative path whose every component is a plain name.
safe_relative() {
    local name=$1 part
    [[ -n "$name" && "$name" != /* ]] || return 1
    local - IFS=/
    set -f # a name's `*` or `?` is a character, never a glob
    for part in $name; do
        [[ -n "$part" && "$part" != . && "$part" != .. ]] || return 1
    done
    [[ "$name" != */ ]]
}

# True when NAME, or a directory on its way, is a symbolic link.
symlink_on_the_way() {
    local name=$1 part at=$RELEASE_DIR
    local - IFS=/
    set -f # a name's `*` or `?` is a character, never a glob
    for part in $name; do
        at=$at/$part
        [[ -L "$at" ]] && return 0
    done
    return 1
}

# True when PATH (relative to the release root) is listed in SHA256SUMS
# (as verified).
listed_in_sums() {
    [[ -n "${LISTED[$1]+x}" ]]
}

# Prints the value of KEY in an os-release FILE (without quotes).
os_release_value() {
    local file=$1 key=$2 line value
    while IFS= read -r line || [[ -n "$line" ]]; do
        case "$line" in
            "$key="*)
                value=${line#*=}
                value=${value#[\"\']}
                value=${value%[\"\']}
                printf '%s\n' "$value"
                return 0
                ;;
        esac
    done <"$file"
}


# Step 2: Debian-like when ID or any word of ID_LIKE is "debian".
detect_distro() {
    local file="" id like word words
    if [[ -n "$ROOT" && -f "$ROOT/etc/os-release" ]]; then
        file="$ROOT/etc/os-release"
    elif [[ -f /etc/os-release ]]; then
        file=/etc/os-release
    elif [[ -f /usr/lib/os-release ]]; then
        file=/usr/lib/os-release
    else
        die 1 "no os-release file found: cannot tell whether to install .deb or .rpm packages"
    fi
    id=$(os_release_value "$file" ID)
    like=$(os_release_value "$file" ID_LIKE)
    DISTRO=rpm
    read -r -a words <<<"$id $like"
    for word in "${words[@]}"; do
        [[ "$word" == debian ]] && DISTRO=debian
    done
    if [[ $DISTRO == debian ]]; then PKG_FORMAT=deb; else PKG_FORMAT=rpm; fi
    say "distribution: ID=${id:-?}${like:+ ID_LIKE=\"$like\"} (from $file): using .$PKG_FORMAT packages"
}


# Step 3: exactly one host kernel image package, never -dbg/headers/devel.
find_kernel_package() {
    local dir="$RELEASE_DIR/linux/host" f base name found=() other=()
    [[ -d "$dir" ]] || die 1 "$dir is missing: this release holds no host kernel"
    shopt -s nullglob
    if [[ $PKG_FORMAT == deb ]]; then
        for f in "$dir"/linux-image-*.deb; do
            base=${f##*/}
            name=${base%%_*}
            [[ "$name" == *-dbg ]] && continue
            found+=("linux/host/$base")
        done
        other=("$dir"/*.rpm)
    else
        for f in "$dir"/kernel-[0-9]*.rpm; do
            found+=("linux/host/${f##*/}")
        done
        other=("$dir"/*.deb)
    fi
    shopt -u nullglob
    if [[ ${#found[@]} -eq 0 ]]; then
        if [[ ${#other[@]} -gt 0 ]]; then
            die 1 "this host needs .$PKG_FORMAT packages, but linux/host/ holds: ${other[*]##*/}"
        fi
        die 1 "no host kernel image package (.$PKG_FORMAT) found in $dir"
    fi
    if [[ ${#found[@]} -gt 1 ]]; then
        die 1 "expected exactly one host kernel image package, found ${#found[@]}: ${found[*]}"
    fi
    PKG=${found[0]}
    listed_in_sums "$PKG" || die "$E_NOT_VERIFIED" "$PKG is not listed in SHA256SUMS: refusing to install an unverified package"
    KERNEL_RELEASE=$(kernel_release_of "$PKG")
    say "host kernel package: $PKG (kernel $KERNEL_RELEASE)"
}

# The kernel release (uname -r) the package installs.
kernel_release_of() {
    local pkg=$1 base=${1##*/} vmlinuz=""
    if [[ $PKG_FORMAT == deb ]]; then
        base=${base%%_*}
        printf '%s\n' "${base#linux-image-}"
        return 0
    fi
    # rpm versions have '-' turned into '_': prefer the file list.
    if command -v rpm >/dev/null 2>&1; then
        vmlinuz=$(rpm -qlp "$RELEASE_DIR/$pkg" 2>/dev/null | grep -m1 '^/boot/vmlinuz-' || true)
    fi
    if [[ -n "$vmlinuz" ]]; then
        printf '%s\n' "${vmlinuz#/boot/vmlinuz-}"
    else
        base=${base#kernel-}
        base=${base%.rpm}
        base=${base%.*}    # arch
        base=${base%-*}    # rpm release
        printf '%s\n' "${base//_/-}"
    fi
}

check_root() {
    if [[ $DRY_RUN -eq 0 && -z "$ROOT" && $(id -u) -ne 0 ]]; then
        die 1 "must be run as root (or try --dry-run, or --root DIR for a staging install)"
    fi
}

# The package name and version from the package's file name.
package_identity() {
    local base=${PKG##*/}
    if [[ $PKG_FORMAT == deb ]]; then
        base=${base%.deb}
        PKG_NAME=${base%%_*}
        base=${base#*_}
        PKG_VERSION=${base%%_*}
    else
        base=${base%.rpm}
        PKG_NAME=kernel
        PKG_ID=$base # name-version.arch, as rpm knows an installed kernel
        base=${base%.*} # arch
        PKG_VERSION=${base#kernel-}
    fi
    [[ $PKG_FORMAT == rpm ]] || PKG_ID=$PKG_NAME
}

# What dpkg or rpm says about package ID on this system: its state and
# version ("ii 6.1.0-1"), or nothing when it is not installed.
package_state() {
    local id=$1 out
    if [[ $PKG_FORMAT == deb ]]; then
        command -v dpkg-query >/dev/null 2>&1 || return 0
        out=$(dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$id" 2>/dev/null) || return 0
    else
        command -v rpm >/dev/null 2>&1 || return 0
        out=$(rpm -q --qf 'ii %{VERSION}-%{RELEASE}' "$id" 2>/dev/null) || return 0
    fi
    case "$out" in
        u* | p*) ;; # known to dpkg, not installed
        *) printf '%s\n' "$out" ;;
    esac
}

# Step 5: the packages that provide the libraries the release's QEMU lacks.
plan_dependencies() {
    local qemu="$RELEASE_DIR/$QEMU_REL" out line soname pkg have
    if [[ ! -e "$qemu" ]]; then
        say "warning: $QEMU_REL is missing from the release; not checking QEMU's libraries"
        return 0
    fi
    if ! command -v ldd >/dev/null 2>&1; then
        say "warning: ldd is not installed; cannot check QEMU's libraries"
        return 0
    fi
    if ! out=$(ldd "$qemu" 2>&1); then
        say "$QEMU_REL is not a dynamically linked executable: no libraries to install"
        return 0
    fi
    while IFS= read -r line; do
        case "$line" in
            *"not found"*)
                line=${line#"${line%%[![:space:]]*}"}
                MISSING_LIBS+=("${line%% *}")
                ;;
        esac
    done <<<"$out"
    if [[ ${#MISSING_LIBS[@]} -eq 0 ]]; then
        say "QEMU's shared libraries are all present on this host: no distribution packages needed"
        return 0
    fi
    for soname in "${MISSING_LIBS[@]}"; do
        if [[ $DISTRO == rpm ]]; then
            pkg="$soname()(64bit)"
        elif [[ -n "${SONAME_PACKAGES[$soname]+x}" ]]; then
            pkg=${SONAME_PACKAGES[$soname]}
        else
            say "warning: no package is known for $soname: installing qemu-system-x86, which provides every library QEMU links"
            pkg="qemu-system-x86"
        fi
        for have in "${DEP_PKGS[@]}"; do
            [[ "$have" == "$pkg" ]] && continue 2
        done
        DEP_PKGS+=("$pkg")
    done
    say "QEMU needs libraries this host lacks: ${MISSING_LIBS[*]}"
    if [[ -n "$ROOT" ]]; then
        say "staging install: not installing dependencies; on the target system run: $(quote_cmd "${DEPS_INSTALL[@]}" "${DEP_PKGS[@]}")"
        return 0
    fi
    DEPS_RUN=1
}

# Fails before any change when a tool needed later is missing.
check_tools() {
    local t tools=(sha256sum cmp)
    if [[ -n "$ROOT" ]]; then
        if [[ $PKG_FORMAT == deb ]]; then tools+=(dpkg-deb); else tools+=(rpm2cpio cpio); fi
    elif [[ $PKG_FORMAT == deb ]]; then
        tools+=(dpkg dpkg-query)
        [[ $DEPS_RUN -eq 0 ]] || tools+=(apt-get)
    else
        tools+=(dnf rpm)
    fi
    [[ -f "$RELEASE_DIR/$KVM_CONF_NAME" ]] || die 1 "$RELEASE_DIR/$KVM_CONF_NAME is missing"
    listed_in_sums "$KVM_CONF_NAME" || die "$E_NOT_VERIFIED" "$KVM_CONF_NAME is not listed in SHA256SUMS"
    [[ $DRY_RUN -eq 1 ]] && return 0
    for t in "${tools[@]}"; do
        command -v "$t" >/dev/null 2>&1 || die 1 "'$t' is not installed; it is needed to install this release; nothing was changed"
    done
}

# What happens to kvm.conf, decided before any change.
plan_kvm_conf() {
    local dest="$ROOT/etc/modprobe.d/kvm.conf" base n=0 now
    KVM_SHA=$(sha256sum -- "$KVM_COPY")
    KVM_SHA=${KVM_SHA%% *}
    if [[ -e "$dest" ]]; then
        now=$(sha256sum -- "$dest")
        now=${now%% *}
    fi
    if [[ ! -e "$dest" ]]; then
        KVM_ACTION=create
    elif [[ "$now" == "$KVM_SHA" ]]; then
        KVM_ACTION=unchanged
    elif [[ -n "$KVM_EARLIER_SHA" && "$now" == "$KVM_EARLIER_SHA" ]]; then
        # The file an earlier install wrote: rewritten without a backup;
        # that install's backup (the admin's original) stays the one.
        KVM_ACTION=update
    else
        KVM_ACTION=replace
        base="$dest.bak-$(date -u +%Y%m%dT%H%M%SZ)"
        KVM_BACKUP=$base
        while [[ -e "$KVM_BACKUP" ]]; do # two runs within one second
            n=$((n + 1))
            KVM_BACKUP="$base-$n"
        done
    fi
    case $KVM_ACTION in
        create) REC_CREATED=true ;;
        replace) REC_BACKUP=$(json_str "${KVM_BACKUP#"$ROOT"}") ;;
        update | unchanged)
            if [[ -n "$KVM_EARLIER_SHA" ]]; then
                REC_BACKUP=$KVM_EARLIER_BACKUP
                REC_CREATED=$KVM_EARLIER_CREATED
            fi
            ;;
    esac
    return 0
}

# A string field of the earlier record (one "key": "value" per line, as
# both installers write it; the keys are unique); empty when absent or null.
record_field() {
    local key=$1 file="$ROOT/$RECORD_REL"
    sed -n "s/^ *\"$key\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" "$file" | head -n 1 |
        sed 's/\\"/"/g; s/\\\\/\\/g'
}

# A boolean field of the earlier record.
record_bool() {
    local key=$1 file="$ROOT/$RECORD_REL"
    sed -n "s/^ *\"$key\": \\(true\\|false\\),\\{0,1\\}\$/\\1/p" "$file" | head -n 1
}

# The strings of a list field of the earlier record, one per line.
record_list() {
    local key=$1 file="$ROOT/$RECORD_REL"
    sed -n "/\"$key\": \\[\$/,/\\]/s/^ *\"\\(.*\\)\",\\{0,1\\}\$/\\1/p" "$file"
}

# The state of STEP in the earlier record; empty in a schema-1 record
# (written only after a complete install).
record_step_state() {
    local step=$1 file="$ROOT/$RECORD_REL"
    sed -n "/\"step\": \"$step\"/{n;s/^ *\"state\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p}" "$file" | head -n 1
}

# What the earlier record says carries over, read before any change (an
# unreadable record is refused, never replaced): whether this package was
# there before any snp-build install, the kernel packages earlier installs
# put here, the dependencies they added, and, when its kvm.conf step was
# done, that file's hash and the admin's original it kept.
read_previous_record() {
    local file="$ROOT/$RECORD_REL" prev_id="" prev_state prev_pre prev_mode prev_kvm
    local mode=live id st have
    [[ -z "$ROOT" ]] || mode=staging
    if [[ -f "$file" ]]; then
        grep -q '^ *"schema_version": [0-9]' "$file" ||
            die 2 "$file is not an snp-build install record: move it aside (it records what an earlier install did; 'snp-build uninstall' reads it), then install again"
        if [[ $PKG_FORMAT == deb ]]; then
            prev_id=$(record_field name)
        else
            prev_id=$(record_field file)
            prev_id=${prev_id##*/}
            prev_id=${prev_id%.rpm}
        fi
        prev_state=$(record_step_state kernel-package)
        prev_pre=$(record_bool package_preinstalled)
        prev_mode=$(record_field mode)
        [[ "$prev_id" != "$PKG_ID" ]] || PKG_PREINSTALLED=${prev_pre:-false}
        while IFS= read -r id; do
            [[ -z "$id" ]] || EARLIER+=("$id")
        done < <(record_list earlier_packages)
        if [[ -n "$prev_id" && "$prev_id" != "$PKG_ID" && ${prev_pre:-false} == false && "$prev_mode" == "$mode" ]]; then
            case "$prev_state" in
                "" | done | failed | running) EARLIER+=("$prev_id") ;;
            esac
        fi
        while IFS= read -r id; do
            [[ -z "$id" ]] || DEPS_INSTALLED+=("$id")
        done < <(record_list dependencies_installed)
        prev_kvm=$(record_step_state kvm-conf)
        if [[ -z "$prev_kvm" || "$prev_kvm" == "done" ]]; then
            KVM_EARLIER_SHA=$(sed -n '/"kvm_conf": {/,/}/s/^ *"sha256": "\(.*\)",\{0,1\}$/\1/p' "$file" | head -n 1)
            id=$(record_field backup)
            [[ -z "$id" ]] || KVM_EARLIER_BACKUP=$(json_str "$id")
            KVM_EARLIER_CREATED=$(record_bool created)
            KVM_EARLIER_CREATED=${KVM_EARLIER_CREATED:-false}
        fi
    fi
    if [[ -z "$ROOT" && "$prev_id" != "$PKG_ID" ]]; then
        st=$(package_state "$PKG_ID")
        [[ "$st" != ?i" $PKG_VERSION" ]] || PKG_PREINSTALLED=true
    fi
    # Each earlier package once, and never this one.
    local kept=()
    for id in "${EARLIER[@]}"; do
        [[ "$id" != "$PKG_ID" ]] || continue
        for have in "${kept[@]}"; do [[ "$have" != "$id" ]] || continue 2; done
        kept+=("$id")
    done
    EARLIER=("${kept[@]}")
    return 0
}

# The YYYY-MM-DD a release name (snp-release-YYYY-MM-DD, maybe with a
# suffix) carries; nothing when it carries no calendar date.
release_date() {
    if [[ $1 =~ ^snp-release-([0-9]{4}-[0-9]{2}-[0-9]{2}) ]] &&
        [[ "$(date -u -d "${BASH_REMATCH[1]}" +%F 2>/dev/null)" == "${BASH_REMATCH[1]}" ]]; then
        printf '%s' "${BASH_REMATCH[1]}"
    fi
    return 0
}

# Step 7: never backwards by accident. A release dated before the one the
# earlier record names is refused unless --allow-downgrade (a name without
# a date orders against nothing), as `snp-build install` does.
check_downgrade() {
    local file="$ROOT/$RECORD_REL" name=${RELEASE_DIR##*/} installed new old
    [[ -f "$file" ]] || return 0
    installed=$(record_field release)
    new=$(release_date "$name")
    old=$(release_date "$installed")
    [[ -n "$new" && -n "$old" && "$new" < "$old" ]] || return 0
    if [[ $ALLOW_DOWNGRADE -eq 1 ]]; then
        say "warning: $name is older than $installed, which is installed: going back to it (--allow-downgrade)"
        return 0
    fi
    die "$E_DOWNGRADE" "$name is older than $installed, which $file says is installed; nothing was changed
  help: install $installed or a newer release; to go back to $name on purpose, pass --allow-downgrade"
}

# Step 6: a live install asks first, unless --yes; never waits on a pipe.
confirm() {
    local answer what=""
    [[ $DRY_RUN -eq 0 && -z "$ROOT" && $YES -eq 0 ]] || return 0
    if [[ ! -t 0 ]]; then
        die 2 "refusing to change this system without confirmation: standard input is not a terminal (pass --yes to install without asking, or --dry-run to see what would be done)"
    fi
    if [[ $DEPS_RUN -eq 1 ]]; then
        "${DEPS_UPDATE[@]}" || say "warning: '$(quote_cmd "${DEPS_UPDATE[@]}")' failed"
        # apt's --print-uris installs nothing (its --assume-no would install
        # without asking when no package beyond those named is needed);
        # dnf always asks, so --assumeno stops it.
        local no=--print-uris
        [[ $DISTRO == debian ]] || no=--assumeno
        "${DEPS_INSTALL[@]/#-y/$no}" "${DEP_PKGS[@]}" 2>/dev/null |
            grep -E 'Need to get|After this operation|newly installed|Total download size|Installed size' || true
        what="${DEP_PKGS[*]} and "
    fi
    read -r -p "Install ${what}$PKG_NAME and kvm.conf on this system? [y/N] " answer || answer=""
    case "$answer" in
        y | Y | yes | YES | Yes) ;;
        *) die 1 "not confirmed: nothing was changed" ;;
    esac
}

# One JSON string; control characters other than tab and newline are
# refused (no path of ours has them).
json_str() {
    local s=$1
    if [[ "$s" == *[$'\001'-$'\010'$'\013'-$'\037']* ]]; then
        die 1 "a path holds control characters, which the install record cannot hold: $s"
    fi
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    printf '"%s"' "$s"
}

# A JSON array of strings, one per line at INDENT.
json_list() {
    local indent=$1 out="" a
    shift
    if [[ $# -eq 0 ]]; then
        printf '[]'
        return 0
    fi
    for a in "$@"; do
        out+="${out:+,}"$'\n'"$indent  $(json_str "$a")"
    done
    printf '[%s\n%s]' "$out" "$indent"
}

# JSON null, or the string.
json_or_null() {
    if [[ -z "$1" ]]; then printf 'null'; else json_str "$1"; fi
}

# The install record, in snp-build's layout (src/host/install/record.rs),
# written atomically.
write_record() {
    local complete=${1:-false} file="$ROOT/$RECORD_REL" tmp step first=1 deps_cmd=null interrupted=""
    [[ $INTERRUPTED -eq 0 ]] || interrupted=$',\n  "interrupted": true'
    local steps="" release path pkg name version kr remove deps earlier mode=live
    [[ -z "$ROOT" ]] || mode=staging
    # Every value first, in the main shell: a refusal in json_str stops the
    # script here instead of leaving a half-written record.
    release=$(json_str "${RELEASE_DIR##*/}")
    path=$(json_str "$RELEASE_DIR")
    pkg=$(json_str "$PKG")
    name=$(json_str "$PKG_NAME")
    version=$(json_str "$PKG_VERSION")
    kr=$(json_str "$KERNEL_RELEASE")
    if [[ $PKG_FORMAT == deb ]]; then
        remove=$(json_list "  " dpkg --purge "$PKG_ID")
    else
        remove=$(json_list "  " dnf remove -y "$PKG_ID")
    fi
    [[ $DEPS_RUN -eq 0 ]] || deps_cmd=$(json_list "  " "${DEPS_INSTALL[@]}" "${DEP_PKGS[@]}")
    deps=$(json_list "  " "${DEPS_INSTALLED[@]}")
    earlier=$(json_list "  " "${EARLIER[@]}")
    for step in dependencies kernel-package kvm-conf; do
        [[ $first -eq 1 ]] || steps+=","
        first=0
        steps+=$'\n'"    {"$'\n'"      \"step\": \"$step\","$'\n'
        steps+="      \"state\": \"${STEP_STATE[$step]}\","$'\n'
        steps+="      \"command\": $(json_or_null "${STEP_CMD[$step]:-}"),"$'\n'
        steps+="      \"note\": $(json_or_null "${STEP_NOTE[$step]:-}")"$'\n'"    }"
    done
    mkdir -p "$(dirname "$file")"
    tmp="$file.tmp.$$"
    cat >"$tmp" <<JSON
{
  "schema_version": 2,
  "release": $release,
  "release_path": $path,
  "installed_at": "$INSTALLED_AT",
  "mode": "$mode",
  "package": {
    "file": $pkg,
    "format": "$PKG_FORMAT",
    "name": $name,
    "version": $version,
    "kernel_release": $kr,
    "sha256": "${LISTED[$PKG]}"
  },
  "remove_command": $remove,
  "package_preinstalled": $PKG_PREINSTALLED,
  "kvm_conf": {
    "path": "/etc/modprobe.d/kvm.conf",
    "sha256": "$KVM_SHA",
    "backup": $REC_BACKUP,
    "created": $REC_CREATED
  },
  "dependencies_command": $deps_cmd,
  "dependencies_installed": $deps,
  "earlier_packages": $earlier,
  "steps": [$steps
  ],
  "complete": $complete$interrupted
}
JSON
    mv -f "$tmp" "$file"
}

# Marks STEP with STATE (and a NOTE) and writes the record (not in a dry
# run). A record that cannot be written after a change stops the install
# as a failed step would (exit 9).
step_state() {
    # Ctrl-C during a step lets it finish; the install stops before the
    # next one.
    [[ $2 != running || $INTERRUPTED -eq 0 ]] || interrupted_stop "the install stopped before step \`$1\`"
    STEP_STATE[$1]=$2
    [[ -z "${3:-}" ]] || STEP_NOTE[$1]=$3
    [[ $DRY_RUN -eq 1 ]] && return 0
    if ! (write_record); then
        printf "%s: error: install stopped at step \`%s\`: the install record %s could not be written\n" "$PROG" "$1" "$ROOT/$RECORD_REL" >&2
        printf '  to undo what was done: %s\n' "$UNDO" >&2
        exit "$E_INCOMPLETE"
    fi
}

# Stops an interrupted install (exit 130): the record says so, and what
# was done; the advice says how to go on.
interrupted_stop() { # interrupted_stop WHERE
    local done="nothing"
    [[ ${#DONE[@]} -eq 0 ]] || done=$(printf '%s, ' "${DONE[@]}")
    [[ $DRY_RUN -eq 1 ]] || (write_record) || true
    {
        printf '%s: error: interrupted: %s\n' "$PROG" "$1"
        printf '  done before it: %s\n' "${done%, }"
        printf '  the record of what was done: %s\n' "$ROOT/$RECORD_REL"
        printf '  to finish: run: %s\n' "$AGAIN"
        printf '  to undo what was done: %s\n' "$UNDO"
    } >&2
    exit "$E_INTERRUPTED"
}

# Stops an install at STEP: the record says what was done.
step_failed() { # step_failed STEP WHAT FINISH [NOTE]
    local step=$1 what=$2 finish=$3 done="nothing"
    if [[ $INTERRUPTED -eq 1 ]]; then
        # Its command took the signal too (a terminal signals the whole
        # group): an interrupt, never dpkg's or the mirror's failure.
        STEP_STATE[$step]=interrupted
        interrupted_stop "the install stopped during step \`$step\` (its command was stopped: $what)"
    fi
    step_state "$step" failed "${4:-}"
    [[ ${#DONE[@]} -eq 0 ]] || done=$(printf '%s, ' "${DONE[@]}")
    {
        printf "%s: error: install stopped at step \`%s\`: %s\n" "$PROG" "$step" "$what"
        printf '  done before it: %s\n' "${done%, }"
        printf '  the record of what was done: %s\n' "$ROOT/$RECORD_REL"
        printf '  to finish: %s\n' "$finish"
        printf '  to undo what was done: %s\n' "$UNDO"
    } >&2
    exit "$E_INCOMPLETE"
}

# Whether dpkg has PACKAGE installed and configured (ii, or hi when held).
deb_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)" == ?i* ]]
}

# Step a: the dependency packages, as an admin installs them.
install_dependencies() {
    local p absent=() have
    [[ $DEPS_RUN -eq 1 ]] || return 0
    if [[ $DRY_RUN -eq 1 ]]; then
        run "${DEPS_UPDATE[@]}"
        run "${DEPS_INSTALL[@]}" "${DEP_PKGS[@]}"
        return 0
    fi
    step_state dependencies running
    if [[ $DISTRO == debian ]]; then
        for p in "${DEP_PKGS[@]}"; do deb_installed "$p" || absent+=("$p"); done
    fi
    # A failed refresh (offline, a mirror down) is not yet a failure: the
    # lists already there may do.
    run "${DEPS_UPDATE[@]}" || say "warning: '$(quote_cmd "${DEPS_UPDATE[@]}")' failed; installing from the package lists already on this system"
    local rc=0
    run "${DEPS_INSTALL[@]}" "${DEP_PKGS[@]}" || rc=$?
    for p in "${absent[@]}"; do
        deb_installed "$p" || continue
        for have in "${DEPS_INSTALLED[@]}"; do [[ "$have" == "$p" ]] && continue 2; done
        DEPS_INSTALLED+=("$p")
    done
    if [[ $rc -ne 0 ]]; then
        step_failed dependencies \
            "'$(quote_cmd "${DEPS_INSTALL[@]}" "${DEP_PKGS[@]}")' failed (exit $rc): the packages providing ${MISSING_LIBS[*]} could not be installed (is the package mirror reachable?)" \
            "once '$(quote_cmd "${DEPS_INSTALL[@]}" "${DEP_PKGS[@]}")' works, run: $AGAIN"
    fi
    step_state dependencies "done"
    DONE+=("dependencies (${DEP_PKGS[*]})")
}

# The command that puts the package on the target, as a shell line.
package_command() {
    if [[ -n "$ROOT" && $PKG_FORMAT == deb ]]; then
        quote_cmd dpkg-deb -x "$PKG_COPY" "$ROOT"
    elif [[ -n "$ROOT" ]]; then
        printf 'rpm2cpio %s | (cd %s && cpio -idm --quiet)\n' "$(shell_quote "$PKG_COPY")" "$(shell_quote "$ROOT")"
    elif [[ $PKG_FORMAT == deb ]]; then
        quote_cmd dpkg -i "$PKG_COPY"
    else
        quote_cmd dnf install -y "$PKG_COPY"
    fi
}

# Step b: the kernel package (the private copy verified before any change).
install_kernel_package() {
    local out rc=0 state hook note
    if [[ $DRY_RUN -eq 1 ]]; then
        [[ -z "$ROOT" ]] || say "staging install: would unpack without maintainer scripts into $ROOT"
        say "[dry-run] would run: ${STEP_CMD[kernel-package]}"
        return 0
    fi
    step_state kernel-package running
    say "running: ${STEP_CMD[kernel-package]}"
    if [[ -n "$ROOT" ]]; then
        say "staging install: unpacking without maintainer scripts into $ROOT"
        if [[ $PKG_FORMAT == deb ]]; then
            dpkg-deb -x "$PKG_COPY" "$ROOT" || rc=$?
        else
            rpm2cpio "$PKG_COPY" | (cd "$ROOT" && cpio -idm --quiet) || rc=$?
        fi
        [[ $rc -eq 0 ]] || step_failed kernel-package "'${STEP_CMD[kernel-package]}' failed (exit $rc)" \
            "fix the cause printed above, then run: $AGAIN"
        step_state kernel-package "done"
        DONE+=("$PKG_NAME")
        return 0
    fi
    out="$PRIVATE/package-output"
    if [[ $PKG_FORMAT == deb ]]; then
        dpkg -i "$PKG_COPY" 2>&1 | tee "$out" >&2 || rc=${PIPESTATUS[0]}
    else
        dnf install -y "$PKG_COPY" 2>&1 | tee "$out" >&2 || rc=${PIPESTATUS[0]}
    fi
    if [[ $rc -eq 0 ]]; then
        step_state kernel-package "done"
        DONE+=("$PKG_NAME")
        return 0
    fi
    state=""
    [[ $PKG_FORMAT != deb ]] || state=$(dpkg-query -W -f='${db:Status-Abbrev}' "$PKG_NAME" 2>/dev/null || true)
    if [[ "$state" == ?F* ]]; then
        hook=$(sed -n 's/^run-parts: \(.*\) exited with .*/\1/p' "$out" | head -n 1)
        note="$PKG_NAME is unpacked but not configured (dpkg status ${state:0:2})${hook:+: the kernel hook $hook failed}"
        step_failed kernel-package "'${STEP_CMD[kernel-package]}' failed (exit $rc): $note" \
            "fix what ${hook:-the failed maintainer script} needs, then run: dpkg --configure -a (and then $AGAIN for kvm.conf)" \
            "$note"
    fi
    step_failed kernel-package "'${STEP_CMD[kernel-package]}' failed (exit $rc)" \
        "fix the cause printed above, then run: $AGAIN"
}

# Step c: kvm.conf, keeping a different existing file as a backup.
install_kvm_conf() {
    local dir="$ROOT/etc/modprobe.d" dest
    dest="$dir/kvm.conf"
    if [[ $KVM_ACTION == unchanged ]]; then
        say "$dest is already up to date: left alone"
        return 0
    fi
    if [[ $DRY_RUN -eq 1 ]]; then
        [[ $KVM_ACTION != replace ]] || say "[dry-run] would keep the existing, different $dest as $KVM_BACKUP"
        say "[dry-run] would copy $KVM_COPY to $dest"
        return 0
    fi
    step_state kvm-conf running
    if [[ $KVM_ACTION == replace ]]; then
        say "keeping the existing, different $dest as $KVM_BACKUP"
        cp -p "$dest" "$KVM_BACKUP" ||
            step_failed kvm-conf "could not copy $dest to $KVM_BACKUP" "fix the cause, then run: $AGAIN"
    elif [[ $KVM_ACTION == update ]]; then
        say "rewriting $dest (an earlier snp-build install wrote it; its backup of the original stays)"
    fi
    say "copying $KVM_COPY to $dest"
    { mkdir -p "$dir" && cp "$KVM_COPY" "$dest.tmp.$$" && chmod 0644 "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest"; } ||
        step_failed kvm-conf "could not write $dest" "fix the cause, then run: $AGAIN"
    step_state kvm-conf "done"
    DONE+=("kvm.conf")
}

# True when FILE names IMAGE (vmlinuz-<kr>) as a whole word:
# vmlinuz-6.1.0-snp is not named by vmlinuz-6.1.0-snp-old.
names_image() { # names_image FILE IMAGE
    local text=$2 rest line
    while IFS= read -r line; do
        rest=$line
        while [[ "$rest" == *"$text"* ]]; do
            local before=${rest%%"$text"*}
            rest=${rest#*"$text"}
            if [[ ! "${before: -1}" =~ [A-Za-z0-9._+~-] && ! "${rest:0:1}" =~ [A-Za-z0-9._+~-] ]]; then
                return 0
            fi
        done
    done <"$1"
    return 1
}

# The boot checks of src/host/boot.rs: prints one line per missing thing
# (what, and the command that makes it); nothing when the host can boot it.
boot_problems() {
    local kr=$KERNEL_RELEASE config="/boot/config-$KERNEL_RELEASE" f entry="" dir stem
    if [[ ! -f "$config" ]] || grep -qx 'CONFIG_BLK_DEV_INITRD=y' "$config"; then
        if [[ ! -f "/boot/initrd.img-$kr" && ! -f "/boot/initramfs-$kr.img" ]]; then
            if [[ $DISTRO == rpm ]]; then
                echo "initramfs for $kr: no /boot/initramfs-$kr.img; run: dracut --kver $kr"
            elif [[ -e /usr/sbin/update-initramfs ]]; then
                echo "initramfs for $kr: no /boot/initrd.img-$kr; run: update-initramfs -c -k $kr"
            else
                echo "initramfs for $kr: no /boot/initrd.img-$kr; no initramfs generator is installed; run: apt-get install --no-install-recommends initramfs-tools && update-initramfs -c -k $kr"
            fi
        fi
    fi
    for f in /boot/grub/grub.cfg /boot/grub2/grub.cfg; do
        [[ -f "$f" ]] && names_image "$f" "vmlinuz-$kr" && entry=$f
    done
    for dir in /boot/loader/entries /efi/loader/entries /boot/efi/loader/entries; do
        [[ -z "$entry" && -d "$dir" ]] || continue
        for f in "$dir"/*; do
            [[ -f "$f" ]] || continue
            stem=${f##*/}
            stem=${stem%.conf}
            if [[ "$stem" == "$kr" || "$stem" == *"-$kr" ]] || grep -qxE "version[[:space:]]+$(printf '%s' "$kr" | sed 's/[][\.*^$+?(){}|/]/\\&/g')[[:space:]]*" "$f" ||
                names_image "$f" "vmlinuz-$kr"; then
                entry=$f
            fi
        done
    done
    if [[ -z "$entry" ]]; then
        if [[ $DISTRO == rpm ]]; then
            echo "boot loader entry for $kr: none; run: kernel-install add $kr /boot/vmlinuz-$kr (or grub2-mkconfig -o /boot/grub2/grub.cfg)"
        elif [[ -f /boot/grub/grub.cfg ]]; then
            echo "boot loader entry for $kr: /boot/grub/grub.cfg does not name vmlinuz-$kr; run: update-grub"
        else
            echo "boot loader entry for $kr: no grub.cfg and no loader entries; install a boot loader (apt-get install grub-efi-amd64, or grub-pc), then run: update-grub"
        fi
    fi
}

final_message() {
    local problems="" line
    echo
    if [[ $DRY_RUN -eq 1 ]]; then
        say "dry run: nothing was changed. After a real install:"
    elif [[ -n "$ROOT" ]]; then
        write_record true
        say "staged into $ROOT. No maintainer scripts ran: the target still has to build the initramfs and boot loader entry for $KERNEL_RELEASE."
    else
        write_record true
        say "recorded what was done in /$RECORD_REL"
        say "done."
        problems=$(boot_problems)
    fi
    if [[ -n "$problems" ]]; then
        say "warning: the SNP host kernel $KERNEL_RELEASE is installed, but this host cannot boot it yet:"
        while IFS= read -r line; do say "warning:   $line"; done <<<"$problems"
        say "warning: then run 'snp-build doctor --host --release DIR' to check again"
        return 0
    fi
    # A staging root has no initramfs or boot entry yet: rebooting is for
    # the target, once it has both.
    local reboot="Reboot into"
    [[ -z "$ROOT" ]] || reboot="On the target, once it has both: reboot into"
    cat <<EOT
  $reboot the SNP host kernel $KERNEL_RELEASE (choose it in the GRUB menu
  if it is not the default), then check that SEV-SNP is enabled:
    cat /sys/module/kvm_amd/parameters/sev_snp    # should print Y
    snp-build doctor --host
EOT
}

main() {
    parse_args "$@"
    check_root
    make_private
    verify_checksums
    verify_signature
    detect_distro
    if [[ $DISTRO == debian ]]; then
        DEPS_UPDATE=(apt-get update)
        DEPS_INSTALL=(apt-get install -y --no-install-recommends)
    else
        DEPS_UPDATE=(dnf makecache)
        DEPS_INSTALL=(dnf install -y --setopt=install_weak_deps=False)
    fi
    find_kernel_package
    package_identity
    plan_dependencies
    check_tools
    private_copy "$PKG" PKG_COPY
    private_copy "$KVM_CONF_NAME" KVM_COPY
    read_previous_record
    check_downgrade
    plan_kvm_conf
    # The advice carries every check this run made: run as printed, it
    # checks the same keys (by absolute path) and allows what this did.
    local carried="" key
    for key in "${TRUSTED_KEYS[@]}"; do
        [[ "$key" == /* ]] || key="$PWD/$key"
        carried+=" --trusted-key $(shell_quote "$key")"
    done
    [[ $ALLOW_DOWNGRADE -eq 0 ]] || carried+=" --allow-downgrade"
    if [[ -n "$ROOT" ]]; then
        AGAIN="$(shell_quote "$RELEASE_DIR/install.sh") --yes --root $(shell_quote "$ROOT")$carried"
        UNDO="snp-build uninstall --root $(shell_quote "$ROOT") --yes"
    else
        AGAIN="$(shell_quote "$RELEASE_DIR/install.sh") --yes$carried"
        UNDO="snp-build uninstall --yes"
    fi
    confirm
    make_root
    INSTALLED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    STEP_STATE=([dependencies]=skipped [kernel-package]=planned [kvm-conf]=skipped)
    STEP_CMD[kernel-package]=$(package_command)
    [[ $DEPS_RUN -eq 0 ]] || STEP_STATE[dependencies]=planned
    [[ $DEPS_RUN -eq 0 ]] || STEP_CMD[dependencies]=$(quote_cmd "${DEPS_INSTALL[@]}" "${DEP_PKGS[@]}")
    [[ $KVM_ACTION == unchanged ]] || STEP_STATE[kvm-conf]=planned
    if [[ $KVM_ACTION == unchanged && -n "$KVM_EARLIER_SHA" ]]; then
        # Ours already, from an earlier install: still ours to undo.
        STEP_STATE[kvm-conf]="done"
        STEP_NOTE[kvm-conf]="written by an earlier install"
    fi
    if [[ $DRY_RUN -eq 0 ]]; then
        write_record
        say "recording each step in $ROOT/$RECORD_REL"
    fi
    # From here on, Ctrl-C and SIGTERM are caught: the step under way
    # finishes (or its stopped command is reported as interrupted), then
    # the install stops with the record true and the temp dir removed.
    trap 'INTERRUPTED=1' INT TERM
    export DEBIAN_FRONTEND=noninteractive
    install_dependencies
    install_kernel_package
    install_kvm_conf
    final_message
}

main "$@"
