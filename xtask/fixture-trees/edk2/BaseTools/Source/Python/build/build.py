## @file
# build.py: the `build` command of the snp-build fixture edk2 (not edk2's).
#
# Takes edk2's options (-p PLATFORM -a ARCH -t TOOLCHAIN -b TARGET -n N
# -D NAME=VALUE -q --cmd-len=N ...) and behaves like edk2's build for what
# snp-build relies on:
# - needs the environment edksetup.sh sets up (WORKSPACE, EDK_TOOLS_PATH,
#   Conf/target.txt, Conf/tools_def.txt, Conf/build_rule.txt);
# - reads the platform .dsc ([Defines], !if/!ifdef, [Components],
#   [LibraryClasses]), every module .inf it names and the .fdf, and fails
#   with "error 000E: File/directory not found in workspace" naming the
#   first missing file (a submodule that is not checked out, or
#   OvmfPkg/AmdSev/Grub/grub.efi for AmdSevX64.dsc);
# - compiles the modules' C files with the toolchain's compiler, -n N at a
#   time, and fails with "error 7000: Failed to execute command" when a
#   compiler or a BaseTools C tool (not built: `make -C BaseTools`) fails;
# - writes every [FD.*] of the .fdf to
#   Build/<OUTPUT_DIRECTORY>/<TARGET>_<TOOLCHAIN>/FV/<NAME>.fd, made by
#   GenFv from a digest of the sources, defines, target, toolchain and arch:
#   the same inputs give the same bytes;
# - for IA32 and X64, needs NASM (${NASM_PREFIX}nasm, as tools_def's
#   NASM_PATH), which edk2 assembles the reset vector and SEC with: the
#   fixture asks its version (`nasm -v`, into the log) and fails with
#   "error 4000: Not available" when it is missing.
# Fixture knob, not in edk2: -D FIXTURE_BROKEN=TRUE breaks the compile.
#
# SPDX-License-Identifier: BSD-2-Clause-Patent

import concurrent.futures
import hashlib
import optparse
import os
import platform
import re
import subprocess
import sys
import time

VERSION = "Build environment: fixture edk2 build.py (snp-build) 0.1"

FILE_NOT_FOUND = 0x000E
OPTION_MISSING = 0x3000
OPTION_VALUE_INVALID = 0x3005
TOOL_NOT_AVAILABLE = 0x4000
COMMAND_FAILURE = 0x7000
MESSAGES = {
    FILE_NOT_FOUND: "File/directory not found in workspace",
    OPTION_MISSING: "Missing option",
    OPTION_VALUE_INVALID: "Invalid option value",
    TOOL_NOT_AVAILABLE: "Not available",
    COMMAND_FAILURE: "Failed to execute command",
}

START = time.time()


class BuildError(Exception):
    def __init__(self, code, extra, where=None):
        Exception.__init__(self, MESSAGES[code])
        self.code, self.extra, self.where = code, extra, where


def fail(err):
    where = err.where or " "
    sys.stderr.write("\nbuild.py...\n%s: error %04X: %s\n" % (where, err.code, MESSAGES[err.code]))
    if err.extra:
        sys.stderr.write("\t%s\n" % err.extra)
    sys.stderr.write("\n- Failed -\n")
    elapsed = time.gmtime(time.time() - START)
    sys.stdout.write("Build end time: %s\n" % time.strftime("%H:%M:%S, %b.%d %Y"))
    sys.stdout.write("Build total time: %s\n\n" % time.strftime("%H:%M:%S", elapsed))
    return 1


def parse_args(argv):
    parser = optparse.OptionParser(usage="build.exe [options] [all|fds|genc|genmake|clean|cleanall|cleanlib|modules|libraries|run]",
                                   version=VERSION)
    parser.add_option("-a", "--arch", action="append", dest="TargetArch", default=[])
    parser.add_option("-p", "--platform", dest="PlatformFile")
    parser.add_option("-m", "--module", dest="ModuleFile")
    parser.add_option("-b", "--buildtarget", action="append", dest="BuildTarget", default=[])
    parser.add_option("-t", "--tagname", action="append", dest="ToolChain", default=[])
    parser.add_option("-x", "--sku-id", dest="SkuId")
    parser.add_option("-n", dest="ThreadNumber", type="int")
    parser.add_option("-f", "--fdf", dest="FdfFile")
    parser.add_option("-r", "--rom-image", action="append", dest="RomImage", default=[])
    parser.add_option("-i", "--fv-image", action="append", dest="FvImage", default=[])
    parser.add_option("-C", "--capsule-image", action="append", dest="CapName", default=[])
    parser.add_option("-u", "--skip-autogen", action="store_true", dest="SkipAutoGen")
    parser.add_option("-e", "--re-parse", action="store_true", dest="Reparse")
    parser.add_option("-c", "--case-insensitive", action="store_true", dest="CaseInsensitive")
    parser.add_option("-w", "--warning-as-error", action="store_true", dest="WarningAsError")
    parser.add_option("-j", "--log", dest="LogFile")
    parser.add_option("-y", "--report-file", dest="ReportFile")
    parser.add_option("-Y", "--report-type", action="append", dest="ReportType", default=[])
    parser.add_option("-D", "--define", action="append", dest="Macros", default=[])
    parser.add_option("-s", "--silent", action="store_true", dest="SilentMode")
    parser.add_option("-q", "--quiet", action="store_true", dest="Quiet")
    parser.add_option("-v", "--verbose", action="store_true", dest="Verbose")
    parser.add_option("-d", "--debug", type="int", dest="Debug")
    parser.add_option("-N", "--no-cache", action="store_true", dest="DisableCache")
    parser.add_option("--conf", dest="ConfDirectory")
    parser.add_option("--check-usage", action="store_true", dest="CheckUsage")
    parser.add_option("--ignore-sources", action="store_true", dest="IgnoreSources")
    parser.add_option("--pcd", action="append", dest="OptionPcd", default=[])
    parser.add_option("-l", "--cmd-len", type="int", dest="CommandLength")
    parser.add_option("--hash", action="store_true", dest="UseHashCache")
    parser.add_option("--genfds-multi-thread", action="store_true", dest="GenfdsMultiThread")
    parser.add_option("--no-genfds-multi-thread", action="store_true", dest="NoGenfdsMultiThread")
    return parser.parse_args(argv)


def read_kv(path):
    values = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "=" in line:
                k, v = line.split("=", 1)
                values[k.strip()] = v.strip()
    return values


def ws_path(workspace, rel):
    """Find REL in WORKSPACE or PACKAGES_PATH, as edk2's mws.join."""
    roots = [workspace] + [p for p in os.environ.get("PACKAGES_PATH", "").split(os.pathsep) if p]
    for root in roots:
        cand = os.path.normpath(os.path.join(root, rel))
        if os.path.exists(cand):
            return cand
    return os.path.normpath(os.path.join(workspace, rel))


def need(path, where=None):
    if not os.path.exists(path):
        raise BuildError(FILE_NOT_FOUND, path, where)
    return path


class Dsc:
    """Reads an edk2 description file (.dsc/.fdf/.inf) into sections."""

    def __init__(self, path, macros):
        self.path = path
        self.macros = dict(macros)
        self.sections = {}  # lower-case section name -> [(lineno, text)]
        self._read()

    def expand(self, text):
        return re.sub(r"\$\((\w+)\)", lambda m: self.macros.get(m.group(1), ""), text)

    def _cond(self, text):
        m = re.match(r"^(\S+)\s*(==|!=)\s*(\S+)$", text)
        if m:
            a, op, b = (self.expand(m.group(1)).strip('"'), m.group(2), self.expand(m.group(3)).strip('"'))
            return (a == b) == (op == "==")
        return self.expand(text).strip('"').upper() in ("TRUE", "1")

    def _read(self):
        stack = []  # one bool per open !if: is this branch active
        section = None
        with open(self.path) as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                active = all(stack)
                if line.startswith("!"):
                    word, _, rest = line.partition(" ")
                    rest = rest.strip()
                    if word == "!ifdef":
                        stack.append(rest in self.macros)
                    elif word == "!ifndef":
                        stack.append(rest not in self.macros)
                    elif word == "!if":
                        stack.append(self._cond(rest))
                    elif word == "!else":
                        stack[-1] = not stack[-1]
                    elif word == "!endif":
                        stack.pop()
                    elif word == "!include" and active:
                        pass
                    continue
                if not active:
                    continue
                if line.startswith("["):
                    section = line.strip("[]").lower()
                    self.sections.setdefault(section, [])
                    continue
                if line.startswith("DEFINE "):
                    k, _, v = line[7:].partition("=")
                    self.macros.setdefault(k.strip(), self.expand(v.strip()))
                    continue
                self.sections.setdefault(section, []).append((lineno, self.expand(line)))

    def defines(self):
        out = {}
        for _, line in self.sections.get("defines", []):
            if "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
        return out

    def lines(self, prefix):
        for name, lines in self.sections.items():
            if name.split(".")[0] == prefix:
                for item in lines:
                    yield item


class Module:
    def __init__(self, workspace, inf_rel, where):
        self.inf_rel = inf_rel
        self.inf = need(ws_path(workspace, inf_rel), where)
        dsc = Dsc(self.inf, {})
        d = dsc.defines()
        self.base_name = d.get("BASE_NAME", os.path.splitext(os.path.basename(inf_rel))[0])
        self.module_type = d.get("MODULE_TYPE", "BASE")
        self.dir = os.path.dirname(self.inf)
        self.sources = []
        for lineno, line in dsc.lines("sources"):
            src = line.split("|", 1)[0].strip()
            path = os.path.normpath(os.path.join(self.dir, src))
            need(path, "%s(%d)" % (self.inf, lineno))
            self.sources.append(path)


def digest_files(h, workspace, paths):
    for path in sorted(set(paths)):
        h.update(os.path.relpath(path, workspace).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())


def run(cmd, cwd=None):
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        return 127, "%s: %s\n" % (cmd[0], e.strerror)
    return p.returncode, p.stdout.decode(errors="replace")


def main(argv):
    options, targets = parse_args(argv)
    quiet = options.Quiet or options.SilentMode
    if not quiet:
        print(VERSION.replace("fixture", "%s fixture" % platform.system()))
        print("Build start time: %s\n" % time.strftime("%H:%M:%S, %b.%d %Y"))

    for var in ("WORKSPACE", "EDK_TOOLS_PATH"):
        if not os.environ.get(var):
            sys.stderr.write("\nbuild.py...\n : error 000E: Environment variable not found\n\t%s\n" % var)
            sys.stderr.write("\n- Failed -\n")
            return 1
    workspace = os.path.normpath(os.environ["WORKSPACE"])
    conf = os.path.abspath(options.ConfDirectory or os.environ.get("CONF_PATH") or os.path.join(workspace, "Conf"))
    target_txt = read_kv(need(os.path.join(conf, "target.txt")))
    tools_def = need(os.path.join(conf, "tools_def.txt"))
    need(os.path.join(conf, "build_rule.txt"))

    macros = {}
    for m in options.Macros:
        k, _, v = m.partition("=")
        macros[k.strip()] = v.strip() if v else "TRUE"

    platform_rel = options.PlatformFile or target_txt.get("ACTIVE_PLATFORM")
    if not platform_rel:
        raise BuildError(OPTION_MISSING, "No active platform specified in target.txt or command line!")
    platform_file = ws_path(workspace, platform_rel)
    if not os.path.isfile(platform_file):
        raise BuildError(FILE_NOT_FOUND, "%s is not found in packages path:\n\t%s" % (platform_rel, workspace))
    if not platform_file.endswith(".dsc"):
        raise BuildError(OPTION_VALUE_INVALID, "Platform file must be a .dsc file: %s" % platform_rel)

    tags = []
    with open(tools_def) as f:
        for line in f:
            m = re.match(r"^\*_(\w+)_\*_\*_FAMILY\s*=", line)
            if m:
                tags.append(m.group(1))
    toolchain = (options.ToolChain or target_txt.get("TOOL_CHAIN_TAG", "").split())
    if not toolchain:
        raise BuildError(OPTION_MISSING, "No toolchain given. Use -t or set TOOL_CHAIN_TAG in target.txt")
    toolchain = toolchain[0]
    if toolchain not in tags:
        raise BuildError(TOOL_NOT_AVAILABLE, "[%s] not defined. No toolchain available for build!" % toolchain)
    cc = "gcc"
    flags = []
    with open(tools_def) as f:
        for line in f:
            m = re.match(r"^\*_%s_\*_CC_PATH\s*=\s*(\S+)" % re.escape(toolchain), line)
            if m:
                cc = m.group(1)

    dsc = Dsc(platform_file, macros)
    defines = dsc.defines()
    archs = options.TargetArch or target_txt.get("TARGET_ARCH", "X64").split()
    supported = defines.get("SUPPORTED_ARCHITECTURES", "X64").split("|")
    for arch in archs:
        if arch not in supported:
            raise BuildError(OPTION_VALUE_INVALID, "Invalid ARCH specified. [Valid ARCH: %s]" % " ".join(supported),
                             platform_file)
    build_target = (options.BuildTarget or target_txt.get("TARGET", "DEBUG").split())[0]
    valid_targets = defines.get("BUILD_TARGETS", "DEBUG|RELEASE").split("|")
    if build_target not in valid_targets:
        raise BuildError(OPTION_VALUE_INVALID, "Invalid TARGET specified. [Valid TARGET: %s]" % " ".join(valid_targets),
                         platform_file)
    with open(tools_def) as f:
        for line in f:
            m = re.match(r"^%s_%s_%s_CC_FLAGS\s*=\s*(.*)$" % (build_target, toolchain, archs[0]), line)
            if m:
                flags = m.group(1).split()

    # Modules named by the platform, and the flash description.
    modules = []
    for lineno, line in list(dsc.lines("components")) + list(dsc.lines("libraryclasses")):
        inf = line.split("|", 1)[-1].strip().rstrip("{").strip()
        if inf.endswith(".inf"):
            modules.append(Module(workspace, inf, "%s(%d)" % (platform_file, lineno)))
    fdf_rel = options.FdfFile or defines.get("FLASH_DEFINITION")
    fdf_file = need(ws_path(workspace, fdf_rel), platform_file) if fdf_rel else None
    fdf = Dsc(fdf_file, dsc.macros) if fdf_file else None
    raw_files = []
    if fdf:
        for lineno, line in fdf.lines("fv"):
            m = re.search(r"SECTION\s+RAW\s*=\s*(\S+)", line)
            if m:
                raw_files.append(need(ws_path(workspace, m.group(1)), "%s(%d)" % (fdf_file, lineno)))
            m = re.match(r"^INF\s+(?:\S+\s+)*?(\S+\.inf)$", line)
            if m:
                modules.append(Module(workspace, m.group(1), "%s(%d)" % (fdf_file, lineno)))

    if any(arch in ("IA32", "X64") for arch in archs):
        nasm = os.environ.get("NASM_PREFIX", "") + "nasm"
        try:
            out = subprocess.run([nasm, "-v"], capture_output=True, text=True)
        except FileNotFoundError:
            raise BuildError(TOOL_NOT_AVAILABLE, "%s (NASM_PATH in tools_def.txt): not found" % nasm)
        print("NASM: %s" % (out.stdout.strip() or out.stderr.strip()))

    build_dir = os.path.join(workspace, defines.get("OUTPUT_DIRECTORY", "Build/" + defines.get("PLATFORM_NAME", "Platform")),
                             "%s_%s" % (build_target, toolchain))
    if targets and targets[0] in ("clean", "cleanall"):
        subprocess.run(["rm", "-rf", build_dir])
        return 0

    # Compile every module, N at a time (-n; 0 means one per CPU, as edk2).
    threads = options.ThreadNumber or int(target_txt.get("MAX_CONCURRENT_THREAD_NUMBER", "0") or 0) or os.cpu_count() or 1
    includes = ["-I" + os.path.join(workspace, "MdePkg", "Include")]
    cflags = flags + ["-D%s=%s" % kv for kv in sorted(macros.items())]
    seen, jobs = set(), []
    for mod in modules:
        if mod.inf in seen:
            continue
        seen.add(mod.inf)
        out_dir = os.path.join(build_dir, archs[0], os.path.relpath(mod.dir, workspace), mod.base_name)
        for src in mod.sources:
            if src.endswith(".c"):
                obj = os.path.join(out_dir, "OUTPUT", os.path.splitext(os.path.relpath(src, mod.dir))[0] + ".obj")
                jobs.append((mod, out_dir, src, obj))

    def compile_one(job):
        mod, out_dir, src, obj = job
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        cmd = cc.split() + cflags + includes + ["-I" + mod.dir, "-c", "-o", obj, src]
        rc, out = run(cmd)
        return job, cmd, rc, out

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        for job, cmd, rc, out in pool.map(compile_one, jobs):
            mod, out_dir, src, obj = job
            if rc != 0:
                sys.stderr.write(out)
                sys.stderr.write("make: *** [GNUmakefile:%d: %s] Error 1\n" % (300 + len(mod.base_name), obj))
                raise BuildError(COMMAND_FAILURE, "make tbuild [%s]" % out_dir)
            if options.Verbose:
                print(" ".join(cmd))
    for mod in modules:
        out_dir = os.path.join(build_dir, archs[0], os.path.relpath(mod.dir, workspace), mod.base_name)
        objs = [j[3] for j in jobs if j[0].inf == mod.inf]
        if not objs:
            continue
        dll = os.path.join(out_dir, "DEBUG", mod.base_name + ".dll")
        os.makedirs(os.path.dirname(dll), exist_ok=True)
        with open(dll, "wb") as out:
            for o in objs:
                with open(o, "rb") as f:
                    out.write(f.read())
        rc, out = run(["GenFw", "-e", mod.module_type, "-o", os.path.join(out_dir, "OUTPUT", mod.base_name + ".efi"), dll])
        if rc != 0:
            sys.stderr.write(out)
            sys.stderr.write("make: *** [GNUmakefile:%d: %s.efi] Error %d\n" % (400, mod.base_name, 127 if rc == 127 else 1))
            raise BuildError(COMMAND_FAILURE, "make tbuild [%s]" % out_dir)

    # Flash images: one file per [FD.NAME], its regions filled by GenFv.
    if fdf:
        h = hashlib.sha256()
        h.update(("%s|%s|%s|%s\n" % (os.path.relpath(platform_file, workspace), ",".join(archs), build_target, toolchain)).encode())
        for k, v in sorted(macros.items()):
            h.update(("-D%s=%s\n" % (k, v)).encode())
        digest_files(h, workspace, [platform_file, fdf_file] + raw_files
                     + [m.inf for m in modules] + [s for m in modules for s in m.sources])
        seed = h.hexdigest()
        fv_dir = os.path.join(build_dir, "FV")
        os.makedirs(fv_dir, exist_ok=True)
        reset_fvs = set()
        for name in fdf.sections:
            if name.startswith("fv."):
                if any("ResetVector" in line for _, line in fdf.sections[name]):
                    reset_fvs.add(name[3:].upper())
        for name, lines in fdf.sections.items():
            if not name.startswith("fd."):
                continue
            fd_name = name[3:].upper()
            size = None
            regions = []
            for i, (_, line) in enumerate(lines):
                kv = re.match(r"^Size\s*=\s*(\S+)", line)
                if kv:
                    size = int(kv.group(1), 0)
                reg = re.match(r"^(0x[0-9A-Fa-f]+)\s*\|\s*(0x[0-9A-Fa-f]+)$", line)
                if reg and i + 1 < len(lines):
                    fv = re.match(r"^FV\s*=\s*(\w+)$", lines[i + 1][1])
                    if fv:
                        regions.append((int(reg.group(1), 16), int(reg.group(2), 16), fv.group(1).upper()))
            image = bytearray(b"\xff" * (size or 0))
            for offset, length, fv_name in regions:
                tmp = os.path.join(fv_dir, fv_name + ".Fv")
                cmd = ["GenFv", "-o", tmp, "-s", hex(length), "-g", seed, "-n", fv_name]
                if fv_name in reset_fvs:
                    cmd.append("-r")
                rc, out = run(cmd)
                if rc != 0:
                    sys.stderr.write(out)
                    raise BuildError(COMMAND_FAILURE, " ".join(cmd))
                with open(tmp, "rb") as f:
                    image[offset:offset + length] = f.read()
            with open(os.path.join(fv_dir, fd_name + ".fd"), "wb") as f:
                f.write(bytes(image))
            if not quiet:
                print("Generating %s FD" % fd_name)

    print("\n- Done -")
    print("Build end time: %s" % time.strftime("%H:%M:%S, %b.%d %Y"))
    print("Build total time: %s\n" % time.strftime("%H:%M:%S", time.gmtime(time.time() - START)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BuildError as e:
        sys.exit(fail(e))
    except KeyboardInterrupt:
        sys.exit(fail(BuildError(COMMAND_FAILURE, "interrupted")))
