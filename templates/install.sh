#!/usr/bin/env bash
# install.sh - install an snp-build release on an AMD EPYC host.
#
# Run it from anywhere: it finds the release files next to itself (the
# directory holding this script is the release root).
#
# What it does, in this order:
#   1. Verifies the release against SHA256SUMS, as strictly as
#      `snp-build install`: every listed file present with its hash (no
#      symbolic links), every line a plain relative path, every file of the
#      release listed (SHA256SUMS.minisig, the signature, is the one file
#      it does not list). Any problem stops it before anything is changed.
#   1b. Checks the signature when a trusted key is given (--trusted-key) or
#      installed (*.pub in /etc/snp-build/trusted-keys/, under --root DIR
#      when given): `minisign -V` must accept SHA256SUMS.minisig with one of
#      them, else nothing is changed. Without a trusted key it says that
#      the signature was not verified. Keys listed only in
#      /etc/snp-build/config.toml ([install] trusted-keys) cannot be read
#      here: it refuses and says to pass them with --trusted-key.
#   2. Detects the distribution from os-release (ID, or any word of ID_LIKE,
#      equal to "debian" means Debian-like, which uses .deb packages; any
#      other distribution uses .rpm packages). With --root DIR,
#      DIR/etc/os-release is used when it exists, /etc/os-release otherwise.
#   3. Installs the host kernel image package from linux/host/: the one
#      linux-image-*.deb that is not a -dbg package (`dpkg -i`), or the one
#      kernel-<version>.rpm (`dnf install -y`). Headers, devel, libc-dev and
#      debug packages are not installed.
#   4. Installs the distribution's QEMU packages when the release's
#      usr/local/bin/qemu-system-x86_64 needs shared libraries this host
#      lacks (`ldd` reports them "not found"): Debian-like
#      `apt-get install -y qemu-system-x86`, otherwise `dnf install -y qemu-kvm`.
#   5. Installs kvm.conf as /etc/modprobe.d/kvm.conf. A different existing
#      file is kept as kvm.conf.bak-<UTC YYYYmmddTHHMMSSZ> beside it (modprobe
#      only reads *.conf files); an identical one is left alone.
#   6. Tells you to reboot into the SNP host kernel and how to check it.
#
# Usage: install.sh [--dry-run] [--root DIR] [--trusted-key PUB]... [-h|--help]
#   --dry-run    print every action instead of doing it; changes nothing.
#   --trusted-key PUB
#                install only if SHA256SUMS is signed by this minisign public
#                key (repeatable; needs the minisign tool).
#   --root DIR   staging install into DIR (made when missing): the
#                package is unpacked into DIR (dpkg-deb -x, or rpm2cpio|cpio),
#                kvm.conf goes to DIR/etc/modprobe.d/; no package maintainer
#                scripts run and no dependencies are installed (they are
#                printed instead). Does not need root.
#   -h, --help   show this help.
# Without --dry-run or --root it must run as root.
#
# Exit codes:
#   0  success (or a dry run that found nothing wrong)
#   1  error: not root, no or several kernel packages, a tool or file is
#      missing, a file of the release is not listed in SHA256SUMS, or an
#      install command failed
#   2  usage error (unknown option, missing option value)
#   3  checksum or signature verification failed (nothing was changed)

set -euo pipefail

PROG=install.sh
RELEASE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KVM_CONF_NAME=kvm.conf
QEMU_REL=usr/local/bin/qemu-system-x86_64

DRY_RUN=0
ROOT=""          # staging root ("" = the live system)
DISTRO=""        # "debian" or "rpm"
PKG_FORMAT=""    # "deb" or "rpm"
PKG=""           # the host kernel image package (path relative to RELEASE_DIR)
TRUSTED_KEYS=()  # --trusted-key files
declare -A LISTED=() # SHA256SUMS: relative path -> sha256 (after verification)
PRIVATE=""       # private copies of what gets installed
SIG_NAME=SHA256SUMS.minisig
KERNEL_RELEASE=""

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
        [[ ! -e "$ROOT" || -d "$ROOT" ]] || die 1 "--root $ROOT: not a directory"
        ROOT="$(realpath -m -- "$ROOT")"
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
    local keys=("${TRUSTED_KEYS[@]}") key dir="$ROOT/etc/snp-build/trusted-keys"
    local sig="$RELEASE_DIR/$SIG_NAME"
    if [[ ${#keys[@]} -eq 0 && -d "$dir" ]]; then
        shopt -s nullglob
        keys=("$dir"/*.pub)
        shopt -u nullglob
    fi
    if [[ ${#keys[@]} -eq 0 && -f "$ROOT/etc/snp-build/config.toml" ]] &&
        grep -q '^[[:space:]]*trusted-keys' "$ROOT/etc/snp-build/config.toml"; then
        die 1 "the host's trusted keys are listed in $ROOT/etc/snp-build/config.toml, which install.sh cannot read: pass them with --trusted-key PUB, or use 'snp-build install'; nothing was changed"
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
    [[ -f "$sig" && ! -L "$sig" ]] ||
        die 3 "the release is unsigned (no $SIG_NAME) but a signature by a trusted key is required (${keys[*]}); nothing was changed"
    for key in "${keys[@]}"; do
        if minisign -Vm "$RELEASE_DIR/SHA256SUMS" -x "$sig" -p "$key" -q >/dev/null 2>&1; then
            say "signature verified: SHA256SUMS is signed by $key"
            return 0
        fi
    done
    die 3 "$SIG_NAME is not a valid signature of SHA256SUMS by a trusted key (${keys[*]}); nothing was changed"
}

check_root() {
    if [[ $DRY_RUN -eq 0 && -z "$ROOT" && $(id -u) -ne 0 ]]; then
        die 1 "must be run as root (or try --dry-run, or --root DIR for a staging install)"
    fi
}

# Step 1: nothing happens before the release is exactly what SHA256SUMS
# says (the same rules as `snp-build install`): every line is
# "<sha256>  <relative path>" with no "..", "." or empty component and no
# path twice; every listed file is a regular file, with no symbolic link on
# its way, and has its hash; every file of the release is listed.
verify_checksums() {
    local sums="$RELEASE_DIR/SHA256SUMS" line hash name path rel actual
    local bad=() unlisted=()
    [[ -f "$sums" && ! -L "$sums" ]] || die 3 "$sums is missing: cannot verify the release; nothing was changed"
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
        if [[ "$rel" == "$SIG_NAME" && -L "$path" ]]; then
            bad+=("$rel: a symbolic link")
        elif [[ "$rel" != SHA256SUMS && "$rel" != "$SIG_NAME" && -z "${LISTED[$rel]+x}" ]]; then
            unlisted+=("$rel")
        fi
    done < <(find "$RELEASE_DIR" -mindepth 1 ! -type d -print0)
    if [[ ${#bad[@]} -gt 0 ]]; then
        printf '%s: error: SHA256SUMS verification failed in %s; nothing was changed.\n' "$PROG" "$RELEASE_DIR" >&2
        printf '%s: bad or missing file: %s\n' "$PROG" "${bad[@]}" >&2
        exit 3
    fi
    if [[ ${#unlisted[@]} -gt 0 ]]; then
        printf '%s: error: not listed in SHA256SUMS (refusing an unverified release; nothing was changed): %s\n' "$PROG" "${unlisted[@]}" >&2
        exit 1
    fi
    say "verified every file of the release against SHA256SUMS"
}

# Copies the release file NAME into a private directory and checks the copy
# against SHA256SUMS again; prints the copy's path. What is installed is
# this copy, so a file swapped in the release after verification is never
# installed.
private_copy() {
    local name=$1 copy actual
    if [[ $DRY_RUN -eq 1 ]]; then # nothing is installed: name the release's file
        printf '%s\n' "$RELEASE_DIR/$name"
        return 0
    fi
    copy="$PRIVATE/${name##*/}"
    cp -- "$RELEASE_DIR/$name" "$copy"
    actual=$(sha256sum -- "$copy")
    [[ "${actual%% *}" == "${LISTED[$name]:-}" ]] ||
        die 3 "$name changed after it was verified; nothing more was changed"
    printf '%s\n' "$copy"
}

# The private directory (mode 0700, removed on exit), made in the main
# shell: private_copy runs in command substitutions.
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

# True when PATH (relative to the release root) is listed in SHA256SUMS.
listed_in_sums() {
    local want=$1 hash name
    while read -r hash name; do
        [[ -n "$hash" ]] || continue
        name=${name#\*}
        name=${name#./}
        [[ "$name" == "$want" ]] && return 0
    done <"$RELEASE_DIR/SHA256SUMS"
    return 1
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
    listed_in_sums "$PKG" || die 1 "$PKG is not listed in SHA256SUMS: refusing to install an unverified package"
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

# Fails before any change when a tool needed later is missing.
check_tools() {
    local t tools=(sha256sum cmp)
    if [[ -n "$ROOT" ]]; then
        if [[ $PKG_FORMAT == deb ]]; then tools+=(dpkg-deb); else tools+=(rpm2cpio cpio); fi
    elif [[ $PKG_FORMAT == deb ]]; then
        tools+=(dpkg apt-get)
    else
        tools+=(dnf)
    fi
    [[ -f "$RELEASE_DIR/$KVM_CONF_NAME" ]] || die 1 "$RELEASE_DIR/$KVM_CONF_NAME is missing"
    listed_in_sums "$KVM_CONF_NAME" || die 1 "$KVM_CONF_NAME is not listed in SHA256SUMS"
    [[ $DRY_RUN -eq 1 ]] && return 0
    for t in "${tools[@]}"; do
        command -v "$t" >/dev/null 2>&1 || die 1 "'$t' is not installed; it is needed to install this release"
    done
}

install_kernel_package() {
    local pkg
    pkg=$(private_copy "$PKG")
    if [[ -n "$ROOT" ]]; then
        say "staging install: unpacking without maintainer scripts into $ROOT"
        if [[ $PKG_FORMAT == deb ]]; then
            run dpkg-deb -x "$pkg" "$ROOT"
        elif [[ $DRY_RUN -eq 1 ]]; then
            say "[dry-run] would run: rpm2cpio $(shell_quote "$pkg") | (cd $(shell_quote "$ROOT") && cpio -idm --quiet)"
        else
            say "running: rpm2cpio $(shell_quote "$pkg") | (cd $(shell_quote "$ROOT") && cpio -idm --quiet)"
            rpm2cpio "$pkg" | (cd "$ROOT" && cpio -idm --quiet)
        fi
    elif [[ $PKG_FORMAT == deb ]]; then
        run dpkg -i "$pkg" ||
            die 1 "dpkg -i failed (if it names missing dependencies, 'apt-get -f install' installs them); run install.sh again afterwards"
    else
        run dnf install -y "$pkg" || die 1 "dnf install failed"
    fi
}

# Step 4: the distro's QEMU packages only when the release's QEMU lacks libraries.
install_qemu_dependencies() {
    local qemu="$RELEASE_DIR/$QEMU_REL" out line missing=() cmd
    if [[ $DISTRO == debian ]]; then
        cmd=(apt-get install -y qemu-system-x86)
    else
        cmd=(dnf install -y qemu-kvm)
    fi
    if [[ ! -e "$qemu" ]]; then
        say "warning: $QEMU_REL is missing from the release; not checking QEMU's libraries"
        return 0
    fi
    if ! command -v ldd >/dev/null 2>&1; then
        say "warning: ldd is not installed; cannot check QEMU's libraries (if QEMU fails to start, run: $(quote_cmd "${cmd[@]}"))"
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
                missing+=("${line%% *}")
                ;;
        esac
    done <<<"$out"
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "QEMU's shared libraries are all present on this host: no distribution packages needed"
        return 0
    fi
    say "QEMU needs libraries this host lacks: ${missing[*]}"
    if [[ -n "$ROOT" ]]; then
        say "staging install: not installing dependencies; on the target system run: $(quote_cmd "${cmd[@]}")"
        return 0
    fi
    run "${cmd[@]}"
}

# Step 5: kvm.conf, keeping a different existing file as a backup.
install_kvm_conf() {
    local src dir="$ROOT/etc/modprobe.d" dest base backup n=0
    src=$(private_copy "$KVM_CONF_NAME")
    dest="$dir/kvm.conf"
    if [[ -e "$dest" ]] && cmp -s "$src" "$dest"; then
        say "$dest is already up to date: left alone"
        return 0
    fi
    if [[ -e "$dest" ]]; then
        base="$dest.bak-$(date -u +%Y%m%dT%H%M%SZ)"
        backup=$base
        while [[ -e "$backup" ]]; do # two runs within one second
            n=$((n + 1))
            backup="$base-$n"
        done
        if [[ $DRY_RUN -eq 1 ]]; then
            say "[dry-run] would keep the existing, different $dest as $backup"
        else
            say "keeping the existing, different $dest as $backup"
            cp -p "$dest" "$backup"
        fi
    fi
    if [[ $DRY_RUN -eq 1 ]]; then
        say "[dry-run] would copy $src to $dest"
        return 0
    fi
    say "copying $src to $dest"
    mkdir -p "$dir"
    cp "$src" "$dest.tmp.$$"
    chmod 0644 "$dest.tmp.$$"
    mv -f "$dest.tmp.$$" "$dest"
}

final_message() {
    echo
    if [[ $DRY_RUN -eq 1 ]]; then
        say "dry run: nothing was changed. After a real install:"
    elif [[ -n "$ROOT" ]]; then
        say "staged into $ROOT. No maintainer scripts ran: the target still has to build the initramfs and boot loader entry for $KERNEL_RELEASE."
    else
        say "done."
    fi
    cat <<EOF
  Reboot into the SNP host kernel $KERNEL_RELEASE (choose it in the GRUB menu
  if it is not the default), then check that SEV-SNP is enabled:
    cat /sys/module/kvm_amd/parameters/sev_snp    # should print Y
    snp-build doctor --host
EOF
}

main() {
    parse_args "$@"
    check_root
    verify_checksums
    verify_signature
    detect_distro
    find_kernel_package
    check_tools
    make_private
    make_root
    install_kernel_package
    install_qemu_dependencies
    install_kvm_conf
    final_message
}

main "$@"
