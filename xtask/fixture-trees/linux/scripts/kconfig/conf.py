#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""scripts/kconfig/conf.py: the fixture kernel's configurator.

Imitates Linux's scripts/kconfig/conf (the C program behind `make
olddefconfig`, `defconfig`, `tinyconfig`, `syncconfig`) on the small
Kconfig language of Kconfig.fixture:

- symbols Kconfig does not know are dropped from .config;
- options whose dependencies are not met are left out of .config
  altogether (as Linux does: no "# CONFIG_X is not set" line), so when a
  dependency is turned on later they are new and take their default;
- a visible option that is off is written "# CONFIG_X is not set";
- a tristate is capped by its dependencies (y -> m when they are m), a
  bool whose dependencies are m may still be y, and without MODULES=y
  every m becomes y;
- symbols missing from .config take their default;
- a symbol without a prompt (DEBUG_INFO, PREEMPTION, ...) ignores the
  value in .config and takes its default only;
- in a choice, the last member set to y in .config wins, else the default;
- "select" forces a symbol on, whatever its own dependencies say.

Usage: conf.py --olddefconfig|--syncconfig|--allnoconfig|--defconfig=FILE Kconfig
The configuration file is $KCONFIG_CONFIG (default .config).
"""

import os
import re
import sys

TRI = {"n": 0, "m": 1, "y": 2}
TRI_NAME = {0: "n", 1: "m", 2: "y"}


class Symbol:
    def __init__(self, name):
        self.name = name
        self.type = None
        self.prompt = False
        self.prompt_if = None  # expression, or None for "always"
        self.defaults = []  # (value expression or literal, condition or None)
        self.depends = []  # expressions, all must hold
        self.choice = None
        self.value = None
        self.selected_by = []  # symbols that "select" this one


class Choice:
    def __init__(self):
        self.members = []
        self.default = None
        self.depends = []


# ---------------------------------------------------------------- parser

TOKEN_RE = re.compile(r'\s*(&&|\|\||!=|[()!=]|"[^"]*"|[A-Za-z0-9_.\-]+)')


def tokenize(text):
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m:
            raise SyntaxError("bad expression: %r" % text)
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_expr(text):
    toks = tokenize(text)
    pos = [0]

    def peek():
        return toks[pos[0]] if pos[0] < len(toks) else None

    def take():
        pos[0] += 1
        return toks[pos[0] - 1]

    def primary():
        t = take()
        if t == "!":
            return ("not", primary())
        if t == "(":
            e = orexpr()
            if take() != ")":
                raise SyntaxError("missing ) in %r" % text)
            return e
        if peek() in ("=", "!="):
            op = take()
            return (op, t, take().strip('"'))
        return ("sym", t)

    def andexpr():
        e = primary()
        while peek() == "&&":
            take()
            e = ("and", e, primary())
        return e

    def orexpr():
        e = andexpr()
        while peek() == "||":
            take()
            e = ("or", e, andexpr())
        return e

    e = orexpr()
    if pos[0] != len(toks):
        raise SyntaxError("trailing tokens in %r" % text)
    return e


def split_if(text):
    m = re.match(r'^(.*?)\s+if\s+(.*)$', text)
    if m:
        return m.group(1), parse_expr(m.group(2))
    return text, None


def parse_kconfig(path):
    symbols, order = {}, []
    cur = None
    choice = None
    help_indent = None
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            indent = len(raw.expandtabs(8)) - len(raw.expandtabs(8).lstrip())
            line = raw.strip()
            if help_indent is not None:
                # help text: everything indented deeper than "help"
                if not line or indent > help_indent:
                    continue
                help_indent = None
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            rest = rest.strip()
            try:
                if word == "config":
                    cur = symbols.setdefault(rest, Symbol(rest))
                    order.append(cur)
                    if choice is not None:
                        cur.choice = choice
                        choice.members.append(cur)
                elif word == "choice":
                    choice, cur = Choice(), None
                elif word == "endchoice":
                    choice, cur = None, None
                elif word in ("bool", "tristate", "string", "int"):
                    cur.type = word
                    if rest:
                        prompt, cond = split_if(rest)
                        cur.prompt, cur.prompt_if = True, cond
                elif word in ("def_bool", "def_tristate"):
                    cur.type = word[4:]
                    val, cond = split_if(rest)
                    cur.defaults.append((parse_expr(val), cond))
                elif word == "prompt" and cur is None and choice is not None:
                    pass
                elif word == "default":
                    val, cond = split_if(rest)
                    if cur is None and choice is not None:
                        choice.default = val
                    elif cur.type in ("string", "int"):
                        cur.defaults.append((val.strip('"'), cond))
                    else:
                        cur.defaults.append((parse_expr(val), cond))
                elif word == "select":
                    symbols.setdefault(rest, Symbol(rest)).selected_by.append(cur)
                elif word == "depends":
                    expr = parse_expr(rest[len("on"):])
                    (cur.depends if cur is not None else choice.depends).append(expr)
                elif word == "help":
                    help_indent = indent
                else:
                    raise SyntaxError("unknown keyword %r" % word)
            except (SyntaxError, AttributeError) as e:
                sys.exit("%s:%d: syntax error: %s" % (path, lineno, e))
    return symbols, order


# ------------------------------------------------------------ evaluation


class Config:
    def __init__(self, symbols, order):
        self.symbols = symbols
        self.order = order
        self.user = {}  # name -> value string ("y", "m", "n", or raw)
        self.user_pos = {}  # name -> line index in .config
        self.env = {"ARCH": os.environ.get("ARCH", "x86") or "x86"}

    def strval(self, name):
        if name in self.env:
            return self.env[name]
        sym = self.symbols.get(name)
        if sym is None:
            # a literal such as y/m/n or a number
            return name
        v = sym.value
        if sym.type in ("bool", "tristate"):
            return TRI_NAME[v or 0]
        return v or ""

    def tri(self, expr):
        kind = expr[0]
        if kind == "sym":
            name = expr[1]
            if name in TRI:
                return TRI[name]
            sym = self.symbols.get(name)
            if sym is None or sym.type not in ("bool", "tristate"):
                return 0
            return sym.value or 0
        if kind == "not":
            return 2 - self.tri(expr[1])
        if kind == "and":
            return min(self.tri(expr[1]), self.tri(expr[2]))
        if kind == "or":
            return max(self.tri(expr[1]), self.tri(expr[2]))
        if kind == "=":
            return 2 if self.strval(expr[1]) == expr[2] else 0
        if kind == "!=":
            return 2 if self.strval(expr[1]) != expr[2] else 0
        raise ValueError(expr)

    def dep(self, sym):
        v = 2
        for e in sym.depends:
            v = min(v, self.tri(e))
        if sym.choice is not None:
            for e in sym.choice.depends:
                v = min(v, self.tri(e))
        return v

    def visible(self, sym):
        if not sym.prompt:
            return False
        return sym.prompt_if is None or self.tri(sym.prompt_if) > 0

    def modules(self):
        m = self.symbols.get("MODULES")
        return m is not None and m.value == 2

    def default(self, sym, dep):
        for val, cond in sym.defaults:
            if cond is not None and self.tri(cond) == 0:
                continue
            if sym.type in ("string", "int"):
                return val
            v = self.tri(val)
            if cond is not None:
                v = min(v, self.tri(cond))
            return v
        return "" if sym.type == "string" else ("0" if sym.type == "int" else 0)

    def calc(self, sym):
        dep = self.dep(sym)
        if sym.type in ("string", "int"):
            if dep == 0:
                return None
            if self.visible(sym) and sym.name in self.user:
                v = self.user[sym.name]
                if sym.type == "string":
                    return v
                if re.fullmatch(r"-?(0x[0-9a-fA-F]+|[0-9]+)", v):
                    return v
            return self.default(sym, dep)
        if dep == 0 and not any(by.value for by in sym.selected_by):
            return 0
        if self.visible(sym) and sym.name in self.user:
            v = TRI.get(self.user[sym.name], 0)
        else:
            v = self.default(sym, dep)
        if sym.type == "tristate":
            v = min(v, dep)
        # "select" forces a lower bound, whatever the dependencies say
        for by in sym.selected_by:
            v = max(v, by.value or 0)
        if sym.type == "bool":
            v = 2 if v else 0
        elif v == 1 and not self.modules():
            v = 2
        return v

    def calc_choice(self, choice):
        dep = 2
        for e in choice.depends:
            dep = min(dep, self.tri(e))
        members = [s for s in choice.members if all(self.tri(e) for e in s.depends)]
        picked = None
        if dep:
            chosen = [s for s in members if self.user.get(s.name) == "y"]
            if chosen:
                picked = max(chosen, key=lambda s: self.user_pos[s.name])
            elif choice.default in [s.name for s in members]:
                picked = self.symbols[choice.default]
            elif members:
                picked = members[0]
        for s in choice.members:
            s.value = 2 if s is picked else 0

    def evaluate(self):
        choices = []
        for s in self.order:
            if s.choice is not None and s.choice not in choices:
                choices.append(s.choice)
        for _ in range(100):
            before = [s.value for s in self.order]
            for s in self.order:
                if s.choice is None:
                    s.value = self.calc(s)
            for c in choices:
                self.calc_choice(c)
            if before == [s.value for s in self.order]:
                return
        sys.exit("conf: configuration does not settle (dependency loop?)")

    # ---------------------------------------------------------- file I/O

    def read(self, path):
        if not os.path.exists(path):
            return False
        with open(path) as f:
            for i, line in enumerate(f):
                line = line.rstrip("\n")
                m = re.match(r"^# CONFIG_([A-Za-z0-9_]+) is not set$", line)
                if m:
                    name = m.group(1)
                    sym = self.symbols.get(name)
                    # As in confdata.c: "is not set" only means n for
                    # bool/tristate; for a string or int it is ignored.
                    if sym is not None and sym.type in ("bool", "tristate"):
                        self.user[name], self.user_pos[name] = "n", i
                    continue
                m = re.match(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$", line)
                if not m:
                    continue
                name, val = m.group(1), m.group(2)
                if name not in self.symbols:
                    continue  # unknown symbols are dropped
                if val.startswith('"') and val.endswith('"') and len(val) >= 2:
                    val = val[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                self.user[name], self.user_pos[name] = val, i
        return True

    def written(self, sym):
        """Whether .config names the symbol at all (SYMBOL_WRITE in Linux):
        a visible prompt, a default whose condition holds, or a select;
        never when the dependencies are unmet."""
        if any(by.value for by in sym.selected_by):
            return True
        if self.dep(sym) == 0:
            return False
        if sym.choice is not None or self.visible(sym):
            return True
        return any(cond is None or self.tri(cond) for _, cond in sym.defaults)

    def lines(self):
        out = []
        for s in self.order:
            if not self.written(s):
                continue
            if s.type in ("bool", "tristate"):
                if s.value:
                    out.append("CONFIG_%s=%s" % (s.name, TRI_NAME[s.value]))
                else:
                    out.append("# CONFIG_%s is not set" % s.name)
            elif s.value is not None:
                if s.type == "string":
                    esc = s.value.replace("\\", "\\\\").replace('"', '\\"')
                    out.append('CONFIG_%s="%s"' % (s.name, esc))
                else:
                    out.append("CONFIG_%s=%s" % (s.name, s.value))
        return out


def kernelversion():
    v = {}
    with open("Makefile") as f:
        for line in f:
            m = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(.*)$", line)
            if m:
                v[m.group(1)] = m.group(2).strip()
    return "%s.%s.%s%s" % (v["VERSION"], v["PATCHLEVEL"], v["SUBLEVEL"], v.get("EXTRAVERSION", ""))


def write_if_changed(path, text):
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_config(cfg, path):
    text = "#\n# Automatically generated file; DO NOT EDIT.\n"
    text += "# Linux/x86 %s Kernel Configuration\n#\n" % kernelversion()
    text += "\n".join(cfg.lines()) + "\n"
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if old == text:
            return
        with open(path + ".old", "w") as f:
            f.write(old)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_autoconf(cfg):
    conf, header = [], []
    for line in cfg.lines():
        if line.startswith("#"):
            continue
        conf.append(line)
        name, _, val = line.partition("=")
        if val == "y":
            header.append("#define %s 1" % name)
        elif val == "m":
            header.append("#define %s_MODULE 1" % name)
        else:
            header.append("#define %s %s" % (name, val))
    write_if_changed("include/config/auto.conf",
                     "#\n# Automatically generated file; DO NOT EDIT.\n#\n" + "\n".join(conf) + "\n")
    write_if_changed("include/generated/autoconf.h",
                     "/*\n * Automatically generated file; DO NOT EDIT.\n */\n" + "\n".join(header) + "\n")


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: conf.py --olddefconfig|--syncconfig|--allnoconfig|--defconfig=FILE Kconfig")
    mode, kconfig = argv[1], argv[2]
    symbols, order = parse_kconfig(kconfig)
    cfg = Config(symbols, order)
    path = os.environ.get("KCONFIG_CONFIG", ".config")
    if mode.startswith("--defconfig="):
        src = mode.split("=", 1)[1]
        if not cfg.read(src):
            sys.exit("***\n*** Can't find default configuration \"%s\"!\n***" % src)
        print("#\n# configuration written to %s\n#" % path)
    elif mode == "--allnoconfig":
        # Every question answered n; symbols without a prompt keep defaults.
        for s in order:
            if s.type in ("bool", "tristate"):
                cfg.user[s.name], cfg.user_pos[s.name] = "n", 0
        # KCONFIG_ALLCONFIG: a fragment whose values win (how tinyconfig
        # merges kernel/configs/tiny.config).
        extra = os.environ.get("KCONFIG_ALLCONFIG")
        if extra and not cfg.read(extra):
            sys.exit("%s: No such file" % extra)
        print("#\n# configuration written to %s\n#" % path)
    elif mode in ("--olddefconfig", "--syncconfig"):
        if not cfg.read(path):
            if mode == "--syncconfig":
                sys.stderr.write(
                    "***\n*** Configuration file \"%s\" not found!\n***\n"
                    "*** Please run some configurator (e.g. \"make oldconfig\" or\n"
                    "*** \"make menuconfig\" or \"make xconfig\").\n***\n" % path)
                return 1
            # like Linux: olddefconfig without .config starts from defaults
        if mode == "--olddefconfig":
            print("#\n# configuration written to %s\n#" % path)
    else:
        sys.exit("conf.py: unknown mode %s" % mode)
    cfg.evaluate()
    write_config(cfg, path)
    if mode == "--syncconfig":
        write_autoconf(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
