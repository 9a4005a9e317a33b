#!/usr/bin/env bash
# launch-qemu.sh - launch a KVM guest (plain, SEV, SEV-ES or SEV-SNP) with this
# release's own QEMU (usr/local/bin/qemu-system-x86_64) and OVMF firmware
# (usr/local/share/qemu), found next to this script wherever it is run from.
# Modeled on AMD's AMDSEV launch-qemu.sh.
#
# Usage: launch-qemu.sh [options]
#   -sev              SEV guest (sev-guest object, policy 0x1)
#   -sev-es           SEV-ES guest (policy 0x5); implies -sev
#   -sev-snp          SEV-SNP guest (sev-snp-guest object, memfd memory,
#                     OVMF.fd via -bios); implies -sev-es and -sev
#   -hda FILE         disk image on virtio-scsi (format qcow2 for *.qcow2,
#                     raw otherwise)
#   -cdrom FILE       CD-ROM image on virtio-scsi, booted first
#   -mem MB           guest memory in MiB (default 2048)
#   -smp N            virtual CPUs (default 4)
#   -cpu MODEL        QEMU CPU model, e.g. EPYC-v4,+avx512f (default EPYC-v4)
#   -firmware NAME    SEV-SNP: the firmware file in the -bios directory to boot
#                     (default OVMF.fd; OVMF.amdsev.fd is the measured direct
#                     boot one, whose launch digest covers -kernel/-initrd/-append)
#   -bios DIR         firmware directory holding OVMF.fd, OVMF_CODE.fd and
#                     OVMF_VARS.fd (default: the release's usr/local/share/qemu)
#   -kernel FILE      boot this kernel directly (SNP: adds kernel-hashes=on)
#   -initrd FILE      initrd for -kernel
#   -append "ARGS"    kernel command line for -kernel (default
#                     "console=ttyS0 earlyprintk=serial root=/dev/sda2")
#   -default-network  user-mode network on virtio-net
#   -monitor PATH     QEMU monitor on the unix socket PATH (default: a pty)
#   -log PATH         console log: the command line, then the guest's console
#                     (default: ./stdout.log)
#   -certs PATH       SEV-SNP certificate blob for the guest (certs-path=)
#   -allow-debug      allow guest debugging (SEV: clears the no-debug policy
#                     bit; SNP: sets policy bit 19) and dump VMCBs on exit
#   -cbitpos N        C-bit position; default: read from CPUID 0x8000001f
#                     EBX[5:0] through /dev/cpu/0/cpuid (needs root)
#   -dry-run          print the QEMU command line and exit; needs neither root
#                     nor an AMD CPU, and creates no file
#   -h, --help        show this help
#
# Without a SEV flag the guest is a plain KVM guest. SEV and SEV-ES guests,
# and plain ones, boot the split firmware: OVMF_CODE.fd read-only plus a
# private per-guest copy of OVMF_VARS.fd, named <guest>.OVMF_VARS.fd (the
# guest is the -hda file's name without its extension) and kept beside the
# -hda image (reused on the next launch); without -hda it lives in a
# temporary directory removed when QEMU exits.
#
# Dry-run output: stdout holds exactly the QEMU command, ONE ARGUMENT PER LINE
# (the first line is the QEMU binary), unquoted; notes (the VARS copy it
# would make, the log file, a placeholder C-bit) go to stderr. When the C-bit
# position cannot be read (not root, not AMD, no /dev/cpu/0/cpuid, no SEV),
# a dry run says so on stderr and prints cbitpos=<cbitpos>; a real launch fails.
#
# Launch measurement: for an SEV-SNP guest, a note on stderr gives the launch
# digest (SHA-384) its attestation report should carry. It comes from the
# release's MEASUREMENTS file when that lists the guest's shape (-smp, the -cpu
# model, guest features 0x1, the release's OVMF.fd, no -kernel); otherwise the
# note gives the `snp-build measure` command that computes it.
#
# VMSA mode: the digests assume how the host creates the guest (MEASUREMENTS'
# `# vmsa-mode:` line): init2 (KVM_SEV_INIT2: Linux >= 6.10 with QEMU >= 9.1)
# or legacy. SEV and SEV-ES guests of an init2 release get legacy-vm-type=off
# (QEMU's SNP guests always use KVM_SEV_INIT2). An SNP launch warns when this
# host's kernel cannot give the mode the digests assume; on a legacy host whose
# kvm_amd has debug_swap on, KVM adds DEBUG_SWAP: the guest features are 0x21.
#
# Must run as root, except with -dry-run.
#
# Exit codes: 0 dry run done; otherwise QEMU's exit status after a launch;
#   1 error (not root, missing file, unreadable C-bit, ...); 2 usage error.

set -euo pipefail

PROG=launch-qemu.sh
RELEASE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
QEMU="$RELEASE_DIR/usr/local/bin/qemu-system-x86_64"
CBIT_PLACEHOLDER='<cbitpos>'
MEASUREMENTS="$RELEASE_DIR/MEASUREMENTS"
GUEST_FEATURES=0x1 # SEV features QEMU gives an SNP guest (SNPActive)
FIRMWARE=OVMF.fd   # the SNP guest's firmware in BIOS_DIR (-firmware)
FIRMWARE_SET=0
VMSA_MODE=init2    # the VMSA mode the digests assume (read_vmsa_mode)
VMSA_MODE_NAMED=0  # 1 when MEASUREMENTS names it
# kvm_amd's parameters (SNP_LAUNCH_KVM_AMD_PARAMS: another sysfs, for tests and chroots)
KVM_AMD_PARAMS=${SNP_LAUNCH_KVM_AMD_PARAMS:-/sys/module/kvm_amd/parameters}
DEFAULT_APPEND="console=ttyS0 earlyprintk=serial root=/dev/sda2"

SEV=0
SEV_ES=0
SEV_SNP=0
HDA=""
CDROM=""
MEM=2048
SMP=4
CPU_MODEL=EPYC-v4
BIOS_DIR="$RELEASE_DIR/usr/local/share/qemu"
KERNEL=""
INITRD=""
APPEND=""
APPEND_SET=0
NETWORK=0
MONITOR=""
LOG="$PWD/stdout.log"
CERTS=""
ALLOW_DEBUG=0
CBITPOS=""
DRY_RUN=0

GUEST_NAME=guest
VARS_SRC=""      # OVMF_VARS.fd to copy from
VARS_FILE=""     # the guest's private copy
VARS_TMPDIR=""   # temporary directory holding VARS_FILE (no -hda)
STTY_SAVED=""
ARGS=()

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

note() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

die() { # die CODE MESSAGE...
    local code=$1
    shift
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit "$code"
}

# The value of an option that takes one: fails when it is missing.
need_value() { # need_value OPTION ARGC [VALUE]
    [[ $2 -ge 2 ]] || die 2 "$1 needs a value (see -h)"
}

need_number() { # need_number OPTION VALUE
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die 2 "$1 needs a positive integer, not '$2'"
}

# A path inside a QEMU option string (key=value,...): commas are doubled.
qemu_escape() {
    printf '%s' "${1//,/,,}"
}

# The absolute path of an existing file, or an error naming the option.
existing_file() { # existing_file OPTION PATH
    local path
    path=$(readlink -e -- "$2") || die 1 "$1: cannot find '$2'"
    [[ -f "$path" || -b "$path" ]] || die 1 "$1: '$2' is not a file"
    printf '%s\n' "$path"
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            -sev) SEV=1 ;;
            -sev-es) SEV=1 SEV_ES=1 ;;
            -sev-snp) SEV=1 SEV_ES=1 SEV_SNP=1 ;;
            -hda) need_value "$1" $#; HDA=$2; shift ;;
            -cdrom) need_value "$1" $#; CDROM=$2; shift ;;
            -mem) need_value "$1" $#; need_number "$1" "$2"; MEM=$2; shift ;;
            -smp) need_value "$1" $#; need_number "$1" "$2"; SMP=$2; shift ;;
            -cpu) need_value "$1" $#; CPU_MODEL=$2; shift ;;
            -bios) need_value "$1" $#; BIOS_DIR=$2; shift ;;
            -firmware) need_value "$1" $#; FIRMWARE=$2; FIRMWARE_SET=1; shift ;;
            -kernel) need_value "$1" $#; KERNEL=$2; shift ;;
            -initrd) need_value "$1" $#; INITRD=$2; shift ;;
            -append) need_value "$1" $#; APPEND=$2; APPEND_SET=1; shift ;;
            -default-network) NETWORK=1 ;;
            -monitor) need_value "$1" $#; MONITOR=$2; shift ;;
            -log) need_value "$1" $#; LOG=$2; shift ;;
            -certs) need_value "$1" $#; CERTS=$2; shift ;;
            -allow-debug) ALLOW_DEBUG=1 ;;
            -cbitpos)
                need_value "$1" $#
                need_number "$1" "$2"
                [[ $2 -le 63 ]] || die 2 "-cbitpos must be between 1 and 63, not $2"
                CBITPOS=$2
                shift
                ;;
            -dry-run) DRY_RUN=1 ;;
            -h | -help | --help)
                usage
                exit 0
                ;;
            *) die 2 "unknown option '$1' (see -h)" ;;
        esac
        shift
    done
}

check_options() {
    if [[ $DRY_RUN -eq 0 && $(id -u) -ne 0 ]]; then
        die 1 "must be run as root (use -dry-run to only print the QEMU command)"
    fi
    [[ -n "$KERNEL" || -z "$INITRD" ]] || die 2 "-initrd needs -kernel"
    [[ -n "$KERNEL" || $APPEND_SET -eq 0 ]] || die 2 "-append needs -kernel"
    [[ -z "$CERTS" || $SEV_SNP -eq 1 ]] || die 2 "-certs only applies to -sev-snp guests"
    [[ $FIRMWARE_SET -eq 0 || $SEV_SNP -eq 1 ]] ||
        die 2 "-firmware only applies to -sev-snp guests (the others boot OVMF_CODE.fd and OVMF_VARS.fd)"
    [[ "$FIRMWARE" != */* && -n "$FIRMWARE" ]] || die 2 "-firmware takes a file name in the -bios directory, not '$FIRMWARE'"
    if [[ $ALLOW_DEBUG -eq 1 && $SEV -eq 0 ]]; then
        note "warning: -allow-debug has no policy effect without -sev, -sev-es or -sev-snp"
    fi
    [[ -x "$QEMU" ]] || die 1 "the release's QEMU is missing or not executable: $QEMU"
    [[ -d "$BIOS_DIR" ]] || die 1 "-bios: firmware directory '$BIOS_DIR' not found"
    BIOS_DIR=$(readlink -e -- "$BIOS_DIR")
    if [[ $SEV_SNP -eq 1 ]]; then
        [[ -f "$BIOS_DIR/$FIRMWARE" ]] || die 1 "-bios: $BIOS_DIR/$FIRMWARE not found"
    else
        [[ -f "$BIOS_DIR/OVMF_CODE.fd" ]] || die 1 "-bios: $BIOS_DIR/OVMF_CODE.fd not found"
    fi
    if [[ -n "$HDA" ]]; then
        HDA=$(existing_file -hda "$HDA")
        GUEST_NAME=${HDA##*/}
    fi
    if [[ -n "$CDROM" ]]; then
        CDROM=$(existing_file -cdrom "$CDROM")
        [[ -n "$HDA" ]] || GUEST_NAME=${CDROM##*/}
    fi
    [[ -z "$KERNEL" ]] || KERNEL=$(existing_file -kernel "$KERNEL")
    [[ -z "$INITRD" ]] || INITRD=$(existing_file -initrd "$INITRD")
    [[ -z "$CERTS" ]] || CERTS=$(readlink -m -- "$CERTS")
    [[ -z "$MONITOR" ]] || MONITOR=$(readlink -m -- "$MONITOR")
    LOG=$(readlink -m -- "$LOG")
    [[ "$GUEST_NAME" != *.* ]] || GUEST_NAME=${GUEST_NAME%.*}
}

# Reads the C-bit position from CPUID 0x8000001f EBX[5:0] as AMD's script
# does. Prints it, or prints why it cannot and returns 1.
read_cbitpos() {
    local ebx cbit
    if [[ $(id -u) -ne 0 ]]; then
        echo "not root: /dev/cpu/0/cpuid is readable by root only"
        return 1
    fi
    if ! grep -q '^vendor_id.*AuthenticAMD' /proc/cpuinfo 2>/dev/null; then
        echo "not an AMD CPU"
        return 1
    fi
    if [[ ! -e /dev/cpu/0/cpuid ]]; then
        if [[ $DRY_RUN -eq 1 ]]; then
            echo "no /dev/cpu/0/cpuid (the cpuid module is not loaded; a dry run does not load it: modprobe cpuid)"
            return 1
        fi
        modprobe cpuid 2>/dev/null || true
    fi
    if [[ ! -r /dev/cpu/0/cpuid ]]; then
        echo "no readable /dev/cpu/0/cpuid (modprobe cpuid failed?)"
        return 1
    fi
    # Reads of /dev/cpu/N/cpuid are 16 bytes (EAX, EBX, ECX, EDX) at offset
    # (function * 16). dd's skip counts ibs blocks, and 0x8000001f * 16 is not
    # a multiple of 16 blocks away, so start at 0x80000000 (skip=134217728),
    # read 32 functions, keep the last one, and take EBX (bytes 4..7).
    if ! ebx=$(dd if=/dev/cpu/0/cpuid ibs=16 count=32 skip=134217728 2>/dev/null |
        tail -c 16 | od -An -t u4 -j 4 -N 4 | tr -d '[:space:]') || [[ ! "$ebx" =~ ^[0-9]+$ ]]; then
        echo "reading CPUID 0x8000001f from /dev/cpu/0/cpuid failed"
        return 1
    fi
    cbit=$((ebx & 0x3f))
    if [[ $cbit -eq 0 ]]; then
        echo "CPUID 0x8000001f reports no C-bit: this CPU (or VM) does not offer SEV"
        return 1
    fi
    echo "$cbit"
}

determine_cbitpos() {
    local out
    [[ $SEV -eq 1 && -z "$CBITPOS" ]] || return 0
    if out=$(read_cbitpos); then
        CBITPOS=$out
        return 0
    fi
    if [[ $DRY_RUN -eq 1 ]]; then
        note "cannot read the C-bit position: $out; using the placeholder $CBIT_PLACEHOLDER (pass -cbitpos N)"
        CBITPOS=$CBIT_PLACEHOLDER
    else
        die 1 "cannot read the C-bit position: $out; pass -cbitpos N"
    fi
}

# Plain, SEV and SEV-ES guests: a private copy of OVMF_VARS.fd per guest.
plan_vars_copy() {
    [[ $SEV_SNP -eq 0 ]] || return 0
    if [[ -n "$HDA" ]]; then
        VARS_FILE="${HDA%/*}/$GUEST_NAME.OVMF_VARS.fd"
    elif [[ $DRY_RUN -eq 1 ]]; then
        VARS_FILE="${TMPDIR:-/tmp}/snp-launch.XXXXXX/$GUEST_NAME.OVMF_VARS.fd"
    else
        VARS_TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/snp-launch.XXXXXX")
        VARS_FILE="$VARS_TMPDIR/$GUEST_NAME.OVMF_VARS.fd"
    fi
    if [[ -e "$VARS_FILE" ]]; then
        note "using the guest's existing UEFI variable store $VARS_FILE"
        return 0
    fi
    VARS_SRC="$BIOS_DIR/OVMF_VARS.fd"
    [[ -f "$VARS_SRC" ]] || die 1 "-bios: $VARS_SRC not found"
    if [[ $DRY_RUN -eq 1 ]]; then
        note "dry run: would copy $VARS_SRC to $VARS_FILE"
    else
        note "copying $VARS_SRC to $VARS_FILE"
        cp -- "$VARS_SRC" "$VARS_FILE"
    fi
}

# The VMSA mode MEASUREMENTS' digests assume; a release without the line was
# computed as init2.
read_vmsa_mode() {
    local mode=""
    if [[ -r "$MEASUREMENTS" ]]; then
        mode=$(awk '$1 == "#" && $2 == "vmsa-mode:" { print $3; exit }' "$MEASUREMENTS")
    fi
    case "$mode" in
        "") VMSA_MODE=init2 ;;
        init2 | legacy) VMSA_MODE=$mode VMSA_MODE_NAMED=1 ;;
        *) die 1 "$MEASUREMENTS names an unknown vmsa-mode '$mode'" ;;
    esac
}

# SNP: can this host give the guest the VMSA the digests assume? Linux
# creates SNP guests with KVM_SEV_INIT2 from 6.10 (arch/x86/kvm/svm/sev.c);
# a legacy host adds DEBUG_SWAP (0x20) when kvm_amd's debug_swap is on.
check_vmsa_mode() {
    local release major minor swap=""
    [[ $SEV_SNP -eq 1 ]] || return 0
    release=$(uname -r)
    IFS=. read -r major minor _ <<<"$release"
    [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || return 0
    if [[ $VMSA_MODE == init2 ]] && ((major < 6 || (major == 6 && minor < 10))); then
        note "warning: the digests assume vmsa-mode init2 (KVM_SEV_INIT2), which this host's kernel $release lacks (Linux >= 6.10): its guests' digests are the legacy ones (snp-build measure --vmsa-mode legacy)"
    elif [[ $VMSA_MODE == legacy ]]; then
        if ((major > 6 || (major == 6 && minor >= 10))); then
            note "warning: the digests assume vmsa-mode legacy, but this host's kernel $release creates guests with KVM_SEV_INIT2 (Linux >= 6.10): expect the init2 digest (snp-build measure --vmsa-mode init2)"
        fi
        [[ -r "$KVM_AMD_PARAMS/debug_swap" ]] && swap=$(<"$KVM_AMD_PARAMS/debug_swap")
        if [[ "$swap" == Y || "$swap" == 1 ]]; then
            GUEST_FEATURES=0x21
            note "kvm_amd debug_swap is on: KVM adds DEBUG_SWAP, so the guest features are 0x21"
        fi
    fi
}

sev_object() {
    local policy obj
    if [[ $SEV_SNP -eq 1 ]]; then
        obj="sev-snp-guest,id=sev0,cbitpos=$CBITPOS,reduced-phys-bits=1"
        # QEMU's default SNP policy is 0x30000; bit 19 allows debugging.
        [[ $ALLOW_DEBUG -eq 0 ]] || obj+=$(printf ',policy=0x%x' $((0x30000 | 0x80000)))
        [[ -z "$CERTS" ]] || obj+=",certs-path=$(qemu_escape "$CERTS")"
        [[ -z "$KERNEL" ]] || obj+=",kernel-hashes=on"
    else
        policy=$((0x1))                                  # NODBG
        [[ $ALLOW_DEBUG -eq 0 ]] || policy=$((policy & ~0x1))
        [[ $SEV_ES -eq 0 ]] || policy=$((policy | 0x4)) # ES
        obj="sev-guest,id=sev0,cbitpos=$CBITPOS,reduced-phys-bits=1"
        obj+=$(printf ',policy=0x%x' "$policy")
        # An init2 release's QEMU (>= 9.1) creates SEV guests with KVM_SEV_INIT2
        # too: its default, legacy-vm-type=auto, means the legacy VM type
        # (QEMU 10.0 target/i386/sev.c, sev_kvm_type).
        [[ $VMSA_MODE_NAMED -eq 0 || $VMSA_MODE != init2 ]] || obj+=",legacy-vm-type=off"
    fi
    printf '%s\n' "$obj"
}

build_command() {
    local machine=q35 code fmt
    if [[ $SEV -eq 1 ]]; then
        machine+=",confidential-guest-support=sev0"
        [[ $SEV_SNP -eq 0 ]] || machine+=",memory-backend=ram1"
        machine+=",vmport=off"
    fi
    ARGS=("$QEMU" -enable-kvm -machine "$machine" -cpu "$CPU_MODEL"
        -smp "$SMP" -m "${MEM}M" -no-reboot -nographic)

    if [[ $SEV_SNP -eq 1 ]]; then
        ARGS+=(-object "memory-backend-memfd,id=ram1,size=${MEM}M,share=true,prealloc=false")
    fi
    [[ $SEV -eq 0 ]] || ARGS+=(-object "$(sev_object)")

    if [[ $SEV_SNP -eq 1 ]]; then
        ARGS+=(-bios "$BIOS_DIR/$FIRMWARE")
    else
        code="$BIOS_DIR/OVMF_CODE.fd"
        ARGS+=(-drive "if=pflash,format=raw,unit=0,file=$(qemu_escape "$code"),readonly=on")
        ARGS+=(-drive "if=pflash,format=raw,unit=1,file=$(qemu_escape "$VARS_FILE")")
    fi

    if [[ -n "$HDA" || -n "$CDROM" ]]; then
        ARGS+=(-device "virtio-scsi-pci,id=scsi0,disable-legacy=on,iommu_platform=true")
    fi
    if [[ -n "$HDA" ]]; then
        if [[ "$HDA" == *.qcow2 ]]; then fmt=qcow2; else fmt=raw; fi
        ARGS+=(-drive "file=$(qemu_escape "$HDA"),if=none,id=disk0,format=$fmt")
        ARGS+=(-device "scsi-hd,drive=disk0")
    fi
    if [[ -n "$CDROM" ]]; then
        ARGS+=(-drive "file=$(qemu_escape "$CDROM"),if=none,id=cd0,format=raw,media=cdrom,readonly=on")
        ARGS+=(-device "scsi-cd,drive=cd0,bootindex=0")
    fi

    if [[ $NETWORK -eq 1 ]]; then
        ARGS+=(-netdev "user,id=vmnic"
            -device "virtio-net-pci,netdev=vmnic,disable-legacy=on,iommu_platform=true,romfile=")
    fi

    if [[ -n "$KERNEL" ]]; then
        ARGS+=(-kernel "$KERNEL")
        [[ -z "$INITRD" ]] || ARGS+=(-initrd "$INITRD")
        if [[ $APPEND_SET -eq 1 ]]; then
            ARGS+=(-append "$APPEND")
        else
            ARGS+=(-append "$DEFAULT_APPEND")
        fi
    fi

    if [[ -n "$MONITOR" ]]; then
        ARGS+=(-monitor "unix:$(qemu_escape "$MONITOR"),server=on,wait=off")
    else
        ARGS+=(-monitor pty)
    fi
}

# One argument as shell input: bare when it is plainly safe, else in single quotes.
shell_quote() {
    if [[ "$1" =~ ^[A-Za-z0-9_./,:=+@%-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

quoted_command() {
    local out="" arg
    for arg in "${ARGS[@]}"; do
        out+="$(shell_quote "$arg") "
    done
    printf '%s\n' "${out% }"
}

# The snp-build command computing the launch digest of this guest.
measure_command() {
    local cmd
    cmd="snp-build measure --ovmf $(shell_quote "$BIOS_DIR/$FIRMWARE") --vcpus $SMP"
    cmd+=" --vcpu-type $(shell_quote "${CPU_MODEL%%,*}") --guest-features $GUEST_FEATURES"
    cmd+=" --vmsa-mode $VMSA_MODE"
    if [[ -n "$KERNEL" ]]; then
        cmd+=" --kernel $(shell_quote "$KERNEL")"
        [[ -z "$INITRD" ]] || cmd+=" --initrd $(shell_quote "$INITRD")"
        if [[ $APPEND_SET -eq 1 ]]; then
            cmd+=" --append $(shell_quote "$APPEND")"
        else
            cmd+=" --append $(shell_quote "$DEFAULT_APPEND")"
        fi
    fi
    printf '%s\n' "$cmd"
}

# SEV-SNP: the expected launch digest of this guest, as a note: looked up in
# MEASUREMENTS when it lists the shape, else the command computing it.
report_measurement() {
    local model=${CPU_MODEL%%,*} want="" digest="" why="" recorded fw_sha
    [[ $SEV_SNP -eq 1 ]] || return 0
    if [[ -n "$KERNEL" ]]; then
        why="a direct kernel boot (kernel hashes) is not in MEASUREMENTS"
    elif [[ ! -r "$MEASUREMENTS" ]]; then
        why="this release has no MEASUREMENTS file"
    elif [[ "$CPU_MODEL" == *,* && ",${CPU_MODEL#*,}" =~ ,(family|model|stepping)= ]]; then
        why="-cpu $CPU_MODEL changes the CPU signature"
    else
        # OVMF.fd's line is `# firmware-sha256: HEX`; another firmware's
        # `# firmware-sha256: HEX NAME`, and its lines end `--firmware NAME`.
        recorded=$(NAME=$FIRMWARE awk '$1 == "#" && $2 == "firmware-sha256:" &&
            ((ENVIRON["NAME"] == "OVMF.fd" && NF == 3) || $4 == ENVIRON["NAME"]) { print $3; exit }' "$MEASUREMENTS")
        fw_sha=$(sha256sum <"$BIOS_DIR/$FIRMWARE")
        fw_sha=${fw_sha%% *}
        if [[ -z "$recorded" || "$fw_sha" != "$recorded" ]]; then
            why="$BIOS_DIR/$FIRMWARE is not a firmware MEASUREMENTS lists"
        else
            want="--vcpus $SMP --vcpu-type $model --guest-features $GUEST_FEATURES --vmsa-mode $VMSA_MODE"
            [[ $FIRMWARE == OVMF.fd ]] || want+=" --firmware $FIRMWARE"
            digest=$(WANT=$want awk '!/^#/ && NF > 1 {
                    d = $1; $1 = ""; sub(/^ +/, "")
                    if ($0 == ENVIRON["WANT"]) { print d; exit }
                }' "$MEASUREMENTS")
            [[ -n "$digest" ]] || why="MEASUREMENTS has no line for $want"
        fi
    fi
    if [[ -n "$digest" ]]; then
        note "expected SEV-SNP launch digest: $digest (MEASUREMENTS: $want)"
    else
        note "expected SEV-SNP launch digest: not precomputed ($why); run $(measure_command)"
    fi
}

# Runs from the EXIT trap set in launch().
# shellcheck disable=SC2317
cleanup() {
    [[ -z "$STTY_SAVED" ]] || stty "$STTY_SAVED" 2>/dev/null || true
    [[ -z "$VARS_TMPDIR" ]] || rm -rf -- "$VARS_TMPDIR"
}

warn_if_disabled() {
    local param=$1 file="/sys/module/kvm_amd/parameters/$1" value=""
    [[ -r "$file" ]] && value=$(<"$file")
    [[ "$value" == Y || "$value" == 1 ]] ||
        note "warning: $file is '${value:-missing}': kvm_amd has $param disabled on this host"
}

launch() {
    local status=0
    trap cleanup EXIT
    if [[ $SEV -eq 1 ]]; then warn_if_disabled sev; fi
    if [[ $SEV_ES -eq 1 ]]; then warn_if_disabled sev_es; fi
    if [[ $SEV_SNP -eq 1 ]]; then warn_if_disabled sev_snp; fi
    if [[ $ALLOW_DEBUG -eq 1 ]]; then
        # As AMD's script: dump every VMCB on VM exit.
        if [[ -w /sys/module/kvm_amd/parameters/dump_all_vmcbs ]]; then
            echo 1 >/sys/module/kvm_amd/parameters/dump_all_vmcbs
        else
            note "warning: cannot enable kvm_amd dump_all_vmcbs"
        fi
    fi
    quoted_command | tee "$LOG"
    echo | tee -a "$LOG"
    note "console log: $LOG"
    if [[ -t 0 ]]; then
        STTY_SAVED=$(stty -g)
        note "mapping CTRL-C to CTRL-] (so CTRL-C reaches the guest)"
        stty intr '^]'
    fi
    note "launching the guest ..."
    "${ARGS[@]}" 2>&1 | tee -a "$LOG" || status=$?
    exit "$status"
}

main() {
    parse_args "$@"
    check_options
    determine_cbitpos
    read_vmsa_mode
    check_vmsa_mode
    plan_vars_copy
    build_command
    report_measurement
    if [[ $DRY_RUN -eq 1 ]]; then
        note "dry run: would log the console to $LOG"
        printf '%s\n' "${ARGS[@]}"
        exit 0
    fi
    launch
}

main "$@"
