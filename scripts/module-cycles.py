#!/usr/bin/env python3
"""Fail if the top-level modules of a Rust crate import each other in a cycle.

    python3 scripts/module-cycles.py protocol/src [--graph]

A crate's top-level modules are the files and folders directly in SRC: `foo.rs`, or `foo/mod.rs`
with `foo/*.rs`, and a `foo.rs` beside a `foo/` folder, are all module `foo`. `lib.rs` and
`main.rs` are the crate root, not a module, and `bin/` holds other crates: neither is a node.

An edge `a -> b` is any reference from a file of module `a` to module `b`: `use crate::b::...`,
`crate::b::...` in an expression or a type, grouped imports (`use crate::{b::X, c}`), and
`super::` paths that climb out of `a` to the crate root (`super::b` in `a.rs`, `super::super::b`
in `a/x.rs`). Inline `mod name { ... }` blocks are followed, so `use super::*` in a `mod tests`
stays inside its module. Comments, strings and character literals are skipped, so doc links
do not count. A bare `b::...` path is not followed: outside the crate root it cannot name a
top-level module (2018 edition paths).

Exit status: 0 if the module graph is acyclic, 1 if it has a cycle (each cycle is printed, with
the file and line of every reference along it), 2 on a usage error. With `--graph`, the edges
are printed too.
"""

import os
import re
import sys

ROOT_FILES = {"lib.rs", "main.rs"}
SKIP_DIRS = {"bin"}


def strip_code(text):
    """Blank out comments, string and char literals, keeping newlines (so line numbers hold)."""
    out = []
    i, n = 0, len(text)
    block_depth = 0
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if block_depth:
            if c == "/" and nxt == "*":
                block_depth += 1
                out.append("  ")
                i += 2
            elif c == "*" and nxt == "/":
                block_depth -= 1
                out.append("  ")
                i += 2
            else:
                out.append("\n" if c == "\n" else " ")
                i += 1
            continue
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
            continue
        if c == "/" and nxt == "*":
            block_depth = 1
            out.append("  ")
            i += 2
            continue
        # Raw strings: r"..", r#".."#, br"..".
        m = re.match(r'b?r(#*)"', text[i:i + 260])
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = '"' + m.group(1)
            j = text.find(close, i + m.end())
            j = n if j < 0 else j + len(close)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
            continue
        if c == "'":
            # A char literal ('x', '\n', '\'', '\u{..}'), not a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'\n])'", text[i:i + 12])
            if m:
                out.append(" " * m.end())
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def first_segments(tree):
    """The first path segment of each item of a use tree's `{...}` group (top level only)."""
    items, depth, cur = [], 0, ""
    for ch in tree:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 0 and ch == ",":
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    out = []
    for item in items:
        m = re.match(r"\s*(r#)?([A-Za-z_][A-Za-z0-9_]*)", item)
        if m:
            out.append(m.group(2))
    return out


def group_after(code, pos):
    """The text of the balanced `{...}` group starting at code[pos] == '{' (without braces)."""
    depth = 0
    for j in range(pos, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return code[pos + 1:j]
    return code[pos + 1:]


PATH_RE = re.compile(
    r"(?<![A-Za-z0-9_$])(crate\s*::|(?:super\s*::\s*)+)\s*(\{|[A-Za-z_][A-Za-z0-9_]*)"
)
MOD_RE = re.compile(r"(?<![A-Za-z0-9_])mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")


def references(path, file_depth):
    """(line, [top-level module names]) for each crate-level path in one file.

    `file_depth` is how deep the file's own module sits below the crate root: 1 for `foo.rs` and
    `foo/mod.rs`, 2 for `foo/bar.rs`.
    """
    with open(path, encoding="utf-8") as f:
        code = strip_code(f.read())
    # Inline modules: (open brace position, close brace position), to know each point's depth.
    inline = []
    for m in MOD_RE.finditer(code):
        start = m.end() - 1
        depth = 0
        for j in range(start, len(code)):
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
                if depth == 0:
                    inline.append((start, j))
                    break
    out = []
    for m in PATH_RE.finditer(code):
        head, seg = m.group(1), m.group(2)
        if head.startswith("crate"):
            rest_depth = 0  # the path continues at the crate root
        else:
            supers = head.count("super")
            depth = file_depth + sum(1 for a, b in inline if a < m.start() < b)
            rest_depth = depth - supers
            if rest_depth != 0:
                continue  # still inside this module (or an error rustc will report)
        names = first_segments(group_after(code, m.end() - 1)) if seg == "{" else [seg]
        names = [x for x in names if x not in ("self", "super", "crate")]
        if names:
            out.append((code.count("\n", 0, m.start()) + 1, names))
    return out


def modules(src):
    """{module name: [(file path, depth)]} for the top-level modules of `src`."""
    mods = {}
    for entry in sorted(os.listdir(src)):
        full = os.path.join(src, entry)
        if os.path.isfile(full) and entry.endswith(".rs") and entry not in ROOT_FILES:
            mods.setdefault(entry[:-3], []).append((full, 1))
        elif os.path.isdir(full) and entry not in SKIP_DIRS:
            for dirpath, _, files in os.walk(full):
                rel = os.path.relpath(dirpath, full)
                below = 0 if rel == "." else rel.count(os.sep) + 1
                for name in sorted(files):
                    if not name.endswith(".rs"):
                        continue
                    depth = 1 + below + (0 if name == "mod.rs" else 1)
                    mods.setdefault(entry, []).append((os.path.join(dirpath, name), depth))
    return mods


def graph(src):
    """({module: {target: [(file, line)]}}, set of module names)."""
    mods = modules(src)
    edges = {m: {} for m in mods}
    for mod, files in mods.items():
        for path, depth in files:
            for line, names in references(path, depth):
                for target in names:
                    if target != mod and target in mods:
                        edges[mod].setdefault(target, []).append((path, line))
    return edges


def cycles(edges):
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return comps


def one_cycle(edges, comp):
    """A shortest cycle through the first module of a component (breadth-first)."""
    start = comp[0]
    members = set(comp)
    prev = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges[v]):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return comp + [start]


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    flags = {a for a in argv[1:] if a.startswith("--")}
    if len(args) != 1 or not os.path.isdir(args[0]) or flags - {"--graph"}:
        print("usage: module-cycles.py SRC_DIR [--graph]", file=sys.stderr)
        return 2
    src = args[0]
    edges = graph(src)
    if "--graph" in flags:
        for mod in sorted(edges):
            print(f"{mod} -> {', '.join(sorted(edges[mod])) or '(nothing)'}")
    comps = cycles(edges)
    if not comps:
        print(f"{src}: no module cycle among {len(edges)} top-level modules")
        return 0
    for comp in comps:
        cycle = one_cycle(edges, comp)
        print(f"{src}: module cycle: {' -> '.join(cycle)}")
        print(f"  (modules in the loop: {', '.join(comp)})")
        for a, b in zip(cycle, cycle[1:]):
            path, line = edges[a][b][0]
            more = len(edges[a][b]) - 1
            extra = f" (and {more} more)" if more else ""
            print(f"  {a} -> {b}: {path}:{line}{extra}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
