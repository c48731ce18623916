#!/usr/bin/env python3
"""Fails if a crate of the workspace has a cycle of `use` between its files.

An edge A -> B means file A names an item through a path (`crate::x::y`, `super::x`,
`self::x`, or `child::x` for a module it declares) that is defined in file B. A path is
followed module by module, and through `pub use` re-exports to the file that defines the item
(so `crate::Conn` re-exported by lib.rs is an edge to transport.rs, where it is defined); an
item from another crate is no edge. A `mod` declaration alone is structure, not an edge.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_file(src, parts):
    """The file of module `parts` (a list of names) under `src`, or None."""
    if not parts:
        for root in ("lib.rs", "main.rs"):
            if os.path.exists(os.path.join(src, root)):
                return os.path.join(src, root)
        return None
    base = os.path.join(src, *parts)
    for cand in (base + ".rs", os.path.join(base, "mod.rs")):
        if os.path.exists(cand):
            return cand
    return None


def module_of(src, path):
    """The module path (list of names) of file `path` under `src`."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod" or (len(rel) == 1 and rel[0] in ("lib", "main")):
        rel = rel[:-1]
    return rel


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    # A `#[cfg(test)] mod tests { ... }` at the end of a file is the file's tests, not its
    # imports.
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    return text[: m.start()] if m else text


DEFINES = r"\b(?:fn|struct|enum|const|static|type|trait|mod|union|macro_rules!)\s+%s\b"


def reexports(path):
    """`pub use` lines of a file: {name: path segments it comes from (ending in the
    original name)}, and the prefixes of its glob re-exports."""
    names, globs = {}, []
    text = strip(open(path, encoding="utf-8").read())
    for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", text, re.S):
        body = re.sub(r"\s+", "", m.group(1))
        if "{" in body:
            prefix, inner = body.split("{", 1)
            items = [prefix + i for i in inner.rstrip("}").split(",") if i]
        else:
            items = [body]
        for item in items:
            item, _, alias = item.partition("as")
            segs = [x for x in item.split("::") if x]
            if not segs:
                continue
            if segs[-1] == "*":
                globs.append(segs[:-1])
            else:
                names[alias or segs[-1]] = segs
    return names, globs


def follow(src, here, segs, depth=0):
    """The file that defines what the path `segs` names, seen from module `here`; None when
    it is outside this crate."""
    if depth > 20 or not segs:
        return None
    head = segs[0]
    if head == "crate":
        base, rest = [], segs[1:]
    elif head == "super":
        base, rest = here[:-1], segs[1:]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif head == "self":
        base, rest = here, segs[1:]
    elif module_file(src, here + [head]):
        base, rest = here, segs
    else:
        return None  # another crate
    parts = list(base)
    while rest and module_file(src, parts + [rest[0]]):
        parts.append(rest[0])
        rest = rest[1:]
    f = module_file(src, parts)
    if f is None or not rest:
        return f
    name = rest[0]
    text = strip(open(f, encoding="utf-8").read())
    if re.search(DEFINES % re.escape(name), text):
        return f
    names, globs = reexports(f)
    if name in names:
        return follow(src, parts, names[name], depth + 1)
    for prefix in globs:
        g = follow(src, parts, prefix + [name], depth + 1)
        if g:
            return g
    return f


def resolve_module(src, here, segs):
    """The module path `segs` names from module `here`, if it is a module of this crate."""
    head, rest = segs[0], segs[1:]
    if head == "crate":
        base = []
    elif head == "super":
        base = here[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    else:
        base = list(here)
    parts = base + rest
    return parts if rest and module_file(src, parts) else None


def edges(src, path):
    here = module_of(src, path)
    text = strip(open(path, encoding="utf-8").read())
    children = re.findall(r"\bmod\s+(\w+)\s*;", text)
    # `a::{b, c::d}` groups: one path per item.
    paths = []
    for m in re.finditer(r"\b((?:crate|super|self|\w+)(?:::\w+)*)::\{([^;{}]*)\}", text):
        for item in re.split(r"[,\s]+", m.group(2)):
            if item and item != "self":
                paths.append(m.group(1).split("::") + item.split("::"))
    for m in re.finditer(r"(?<![:\w])((?:crate|super|self|\w+)(?:::\w+)+)", text):
        segs = m.group(1).split("::")
        if segs[0] in ("crate", "super", "self") or segs[0] in children:
            paths.append(segs)
    # Modules brought in by name (`use crate::sys;`, `use super::fifo as f;`): `sys::x`.
    aliases = {}
    for m in re.finditer(r"\buse\s+((?:crate|super|self)(?:::\w+)+)(?:\s+as\s+(\w+))?\s*;", text):
        segs = m.group(1).split("::")
        target = resolve_module(src, here, segs)
        if target is not None:
            aliases[m.group(2) or segs[-1]] = target
    for m in re.finditer(r"(?<![:\w])(\w+)((?:::\w+)+)", text):
        if m.group(1) in aliases:
            paths.append(["crate"] + aliases[m.group(1)] + m.group(2).split("::")[1:])
    out = set()
    for segs in paths:
        if segs[0] not in ("crate", "super", "self") and segs[0] not in children:
            continue
        target = follow(src, here, segs)
        if target and os.path.abspath(target) != os.path.abspath(path):
            out.add(os.path.abspath(target))
    return out


def cycles(src):
    files = []
    for d, _, names in os.walk(src):
        files += [os.path.abspath(os.path.join(d, n)) for n in names if n.endswith(".rs")]
    graph = {f: edges(src, f) for f in files}
    found, state, stack = [], {}, []

    def visit(f):
        state[f] = 1
        stack.append(f)
        for g in sorted(graph.get(f, ())):
            if state.get(g) == 1:
                found.append(stack[stack.index(g):] + [g])
            elif g not in state:
                visit(g)
        stack.pop()
        state[f] = 2

    for f in sorted(files):
        if f not in state:
            visit(f)
    return found


def main():
    bad = 0
    for d, _, names in os.walk(ROOT):
        if "/target" in d or "/." in d:
            continue
        if "Cargo.toml" in names and os.path.isdir(os.path.join(d, "src")):
            for cycle in cycles(os.path.join(d, "src")):
                bad += 1
                print("import cycle: " + " -> ".join(os.path.relpath(f, ROOT) for f in cycle))
    if bad:
        sys.exit(1)
    print("import graph: no cycle between files")


if __name__ == "__main__":
    main()
