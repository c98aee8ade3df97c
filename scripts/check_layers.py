#!/usr/bin/env python3
"""Checks the crate's architecture: layers that point one way, no import circles.

    python3 scripts/check_layers.py [SRC_DIR] [--graph]

The architecture has to be visible in the source tree. Every top-level module
under src/ is a layer, and the layers are stacked in the order of LAYERS
below: a file may use its own layer and the layers under it, never one
above. Keeping dependencies pointing one way keeps the core (domain, store,
projections) usable without the application service or the Python bindings,
and it keeps the files untangled enough to be read, tested and moved one at
a time.

What counts as a dependency: file A depends on file B when A names an item of
B through a path that starts with `crate::`, `super::` or `self::`, in a `use`
declaration (nested braces included: `use crate::a::{b, c::{d, e}}`) or inline
in code (`crate::store::open(url)`). A `use` of a child module declared in
the same file (`pub use events::Event;` in domain/mod.rs) is the 2018-edition
spelling of `self::events::Event` and counts as well, so a re-export in a
mod.rs ties the mod.rs to the file that defines the item. A path resolves to
the longest module prefix that is a file (`src/a/b.rs` is module `a::b`,
`src/a/mod.rs` is `a`, `src/lib.rs` is the crate root; edges to the root are
ignored). Comments, string and char literals, `mod x;` declarations, `$crate`
paths of macros and items marked `#[cfg(test)]` (test modules) are ignored.

Checks:
- import circles: sets of two or more files that reach each other (strongly
  connected components), printed as `circle: a <-> b` and one line per edge
  inside the set with the names that tie it;
- upward dependencies: an edge from a lower layer to a higher one, one line
  each (`layer: src/a.rs (domain) -> src/b.rs (store): names`);
- unknown layers: a top-level module that is missing from LAYERS, so that
  the list stays complete. src/lib.rs is exempt.

Exits 1 when any problem is found, 0 otherwise. `--graph` also prints every
edge first. When a `use` brings in a module (`use crate::store;`), the edge
lists the items used through it (`store::open` gives `open`).

The parser is a small scanner, not a Rust parser: it handles the code of this
crate, not every corner of the language (`#[path]` attributes, paths made by
macros, and bare paths through a child module in code, like `sqlite::open()`
in store/mod.rs without a `use`, are not seen).
"""

from __future__ import annotations

import os
import re
import sys
from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Set, Tuple

# Top-level layers, lowest first. Dependencies point one way:
#   domain <- store <- projections <- migrations <- app <- python
# (error and sys sit under everything: the error type and process plumbing).
# A file may depend on its own layer and the layers before it in this list.
LAYERS = [
    "error",
    "sys",
    "domain",
    "store",
    "projections",
    "migrations",
    "app",
    "python",
]

# Files that are the crate root: their module path is empty, they have no
# layer, and edges into them are ignored.
ROOT_FILES = ("lib.rs", "main.rs")

Module = Tuple[str, ...]  # a module path: ("store", "sqlite") for store::sqlite


# ---------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------


def module_of(rel: str) -> Module:
    """Module path of a file, from its path relative to the source dir."""
    parts = rel[: -len(".rs")].split("/")
    if len(parts) == 1 and parts[0] + ".rs" in ROOT_FILES:
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def find_files(src: str) -> Dict[Module, str]:
    """Maps each module path to its file (relative to src, `/` separated)."""
    files: Dict[Module, str] = {}
    for root, dirs, names in os.walk(src):
        dirs.sort()
        for name in sorted(names):
            if name.endswith(".rs"):
                rel = os.path.relpath(os.path.join(root, name), src)
                rel = rel.replace(os.sep, "/")
                files[module_of(rel)] = rel
    return files


# ---------------------------------------------------------------------------
# Cleaning the source text
# ---------------------------------------------------------------------------


def blank(text: str) -> str:
    """Spaces for every character but newlines, so offsets and lines stay put."""
    return re.sub(r"[^\n]", " ", text)


def strip_comments_and_literals(text: str) -> str:
    """Blanks out comments (nested /* */ too), strings, raw strings and chars.

    Lifetimes ('a) are left alone. A string keeps its quotes, so the code
    around it still reads as code.
    """
    out: List[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":  # line comment
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif c == "/" and nxt == "*":  # block comment, may nest
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif c in "rb" and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            # Raw strings r"..", r#".."#, br".." and byte strings b"..".
            m = re.compile(r'b?r(#*)"').match(text, i)
            if m:
                end = text.find('"' + m.group(1), m.end())
                j = n if end < 0 else end + 1 + len(m.group(1))
                out.append(blank(text[i:j]))
                i = j
            elif c == "b" and nxt in "\"'":
                out.append(" ")  # the b prefix; the literal follows
                i += 1
            else:
                out.append(c)
                i += 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + blank(text[i + 1 : j]) + '"')
            i = j + 1
        elif c == "'":
            # A char literal is '\..' or one character and a quote; anything
            # else is a lifetime or a label.
            if nxt == "\\":
                j = i + 2
                while j < n and text[j] != "'":
                    j += 2 if text[j] == "\\" else 1
                out.append(blank(text[i : j + 1]))
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                out.append(blank(text[i : i + 3]))
                i += 3
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")


def item_end(text: str, start: int) -> int:
    """End of the item starting at `start`: after its `;` or its `{...}` body."""
    depth = 0  # of () and [], where a `;` does not end the item
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        elif c == "{" and depth == 0:
            braces = 0
            while i < n:
                if text[i] == "{":
                    braces += 1
                elif text[i] == "}":
                    braces -= 1
                    if braces == 0:
                        return i + 1
                i += 1
            return n
        i += 1
    return n


def strip_test_items(text: str) -> Tuple[str, Set[str]]:
    """Blanks the items under #[cfg(test)] (test modules and helpers).

    Returns the text and the names of out-of-line test modules
    (`#[cfg(test)] mod tests;`), whose files are test-only as a whole.
    """
    test_mods: Set[str] = set()
    while True:
        m = CFG_TEST.search(text)
        if not m:
            return text, test_mods
        end = item_end(text, m.end())
        item = text[m.end() : end]
        out_of_line = re.match(
            r"(?:\s*#\s*\[[^\]]*\])*\s*(?:pub\s*(?:\([^)]*\))?\s*)?mod\s+(\w+)\s*;", item
        )
        if out_of_line:
            test_mods.add(out_of_line.group(1))
        text = text[: m.start()] + blank(text[m.start() : end]) + text[end:]


# ---------------------------------------------------------------------------
# Reading the paths a file names
# ---------------------------------------------------------------------------

USE_DECL = re.compile(r"(?<![\w$])use\s+([^;]+);")
INLINE_PATH = re.compile(
    r"(?<![\w$:])(?:crate|super|self)(?:\s*::\s*(?:r#)?[A-Za-z_]\w*)+"
)
INLINE_MOD = re.compile(r"(?<![\w$])mod\s+(\w+)\s*\{")
OUTLINE_MOD = re.compile(r"(?<![\w$])mod\s+(?:r#)?(\w+)\s*;")
VIS_IN_PATH = re.compile(r"pub\s*\(\s*in\s+[^)]*\)")
USE_TOKEN = re.compile(r"\s*(::|[{},*]|(?:r#)?[A-Za-z_]\w*)")


def tokenize_use(body: str) -> List[str]:
    """Splits the tree of a `use` into names, `::`, braces, commas and `*`."""
    tokens: List[str] = []
    pos = 0
    body = body.strip()
    while pos < len(body):
        m = USE_TOKEN.match(body, pos)
        if not m:
            return []  # something this scanner does not know: skip the use
        tok = m.group(1)
        tokens.append(tok[2:] if tok.startswith("r#") else tok)
        pos = m.end()
    return tokens


def expand_use(body: str) -> List[Tuple[List[str], str]]:
    """Flattens a use tree into (path, local name) pairs, one per leaf.

    `a::{self, b as c, d::{e, *}}` -> ([a], a), ([a, b], c), ([a, d, e], e),
    ([a, d, *], *). `self` inside braces names the module before the braces.
    """
    tokens = tokenize_use(body)
    pos = 0

    def tree(prefix: List[str]) -> List[Tuple[List[str], str]]:
        nonlocal pos
        path = list(prefix)
        alias = ""
        while pos < len(tokens):
            tok = tokens[pos]
            if tok == "{":
                pos += 1
                leaves: List[Tuple[List[str], str]] = []
                while pos < len(tokens) and tokens[pos] != "}":
                    if tokens[pos] == ",":
                        pos += 1
                        continue
                    leaves.extend(tree(path))
                pos += 1  # the closing brace
                return leaves
            if tok == "*":
                pos += 1
                return [(path + ["*"], "*")]
            if tok == "::":
                pos += 1
                continue
            if tok in (",", "}"):
                break
            pos += 1
            if tok == "as":  # a rename: the next token is the local name
                alias = tokens[pos] if pos < len(tokens) else ""
                pos += 1
                continue
            if tok == "self" and path:
                continue  # a::{self} is a itself
            path.append(tok)
        if not path:
            return []
        return [(path, alias or path[-1])]

    return tree([])


class Scope:
    """Inline `mod name { ... }` blocks of a file, to place `super`/`self`."""

    def __init__(self, text: str):
        self.spans: List[Tuple[int, int, str]] = []
        for m in INLINE_MOD.finditer(text):
            self.spans.append((m.start(), item_end(text, m.end() - 1), m.group(1)))

    def inner(self, pos: int) -> Module:
        """Inline modules around `pos`, outermost first."""
        return tuple(name for start, end, name in self.spans if start <= pos < end)


def named_paths(text: str, here: Module) -> Iterator[Tuple[List[str], str]]:
    """Yields (absolute path, local name) for each path the text names.

    The local name is what a `use` brings into scope (`b` for `use a::b`,
    `c` for `use a::b as c`); it is empty for a path written inline.

    `here` is the file's module. Paths that start with `crate`, `super` or
    `self` are made absolute; a `use` path that starts with a child module
    declared in this file (`mod x;`) is taken as `self::x::...`. Other paths
    (std, external crates, local names) are not yielded.
    """
    scope = Scope(text)
    children = {m.group(1) for m in OUTLINE_MOD.finditer(text)}

    def absolute(segments: List[str], pos: int) -> Optional[List[str]]:
        module = list(here + scope.inner(pos))
        head, rest = segments[0], segments[1:]
        if head == "crate":
            return rest
        if head == "self":
            return module + rest
        if head == "super":
            while True:
                module = module[:-1]
                if rest and rest[0] == "super":
                    rest = rest[1:]
                else:
                    return module + rest
        return None

    covered: List[Tuple[int, int]] = []
    for m in USE_DECL.finditer(text):
        covered.append((m.start(), m.end()))
        for path, local in expand_use(m.group(1)):
            if path[0] in ("crate", "self", "super"):
                full = absolute(path, m.start())
            elif path[0] in children and not scope.inner(m.start()):
                full = list(here) + path
            else:
                full = None
            if full is not None:
                yield full, local

    for m in INLINE_PATH.finditer(text):
        if any(start <= m.start() < end for start, end in covered):
            continue
        segments = [s.strip().replace("r#", "") for s in m.group(0).split("::")]
        full = absolute(segments, m.start())
        if full is not None:
            yield full, ""


# ---------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------

Graph = Dict[str, Dict[str, List[str]]]  # file -> file -> names, in order seen


def resolve(path: List[str], files: Dict[Module, str]) -> Tuple[Optional[str], str]:
    """File of the longest module prefix of `path`, and the name it points at.

    `store::sqlite::open` -> (store/sqlite.rs, "open"); a path that names a
    module itself (`use crate::store;`) gives the module's own name.
    """
    for cut in range(len(path), 0, -1):
        prefix = tuple(path[:cut])
        if prefix in files:
            name = path[cut] if cut < len(path) else path[cut - 1]
            return files[prefix], name
    return None, ""  # the crate root, or no file at all


def build_graph(src: str) -> Tuple[Graph, List[str]]:
    """Reads every file under src; returns the edges and the files checked."""
    files = find_files(src)
    graph: Graph = defaultdict(dict)
    test_only: Set[str] = set()
    texts: Dict[str, str] = {}
    for module, rel in files.items():
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            text = strip_comments_and_literals(f.read())
        text, test_mods = strip_test_items(text)
        text = VIS_IN_PATH.sub(lambda m: blank(m.group(0)), text)
        texts[rel] = text
        for name in test_mods:
            if module + (name,) in files:
                test_only.add(files[module + (name,)])
    # A test-only file does not count, nor anything under it.
    test_dirs = tuple(rel[: -len("mod.rs")] if rel.endswith("/mod.rs") else rel[:-3] + "/"
                      for rel in test_only)
    checked = [rel for rel in files.values()
               if rel not in test_only and not rel.startswith(test_dirs)]
    by_rel = {rel: module for module, rel in files.items()}
    live = {module: rel for module, rel in files.items() if rel in checked}
    for rel in checked:
        edges = graph[rel]
        modules: Dict[str, str] = {}  # local name of a `use`d module -> its file
        for path, local in named_paths(texts[rel], by_rel[rel]):
            target, name = resolve(path, live)
            if target is None or target == rel:
                continue
            if local and target == live.get(tuple(path)):
                modules[local] = target  # `use crate::store;`: names come later
            names = edges.setdefault(target, [])
            if name not in names:
                names.append(name)
        # A module brought in by `use` is named as `store::open(..)`: put the
        # items it is used for on the edge, in place of the module's name.
        for local, target in modules.items():
            used = re.findall(r"(?<![\w$:])%s\s*::\s*(?:r#)?([A-Za-z_]\w*)" % re.escape(local),
                              texts[rel])
            names = edges[target]
            for name in used:
                if name not in names:
                    names.append(name)
            if used and local in names and local not in used:
                names.remove(local)
    return graph, sorted(checked)


def circles(graph: Graph, nodes: List[str]) -> List[List[str]]:
    """Strongly connected components of two or more files (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    found: List[List[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, {})))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def layer_of(rel: str) -> Optional[str]:
    """Top-level module of a file; None for the crate root."""
    if rel in ROOT_FILES:
        return None
    first = rel.split("/")[0]
    return first[: -len(".rs")] if first.endswith(".rs") else first


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main(argv: List[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    flags = {a for a in argv if a.startswith("--")}
    unknown_flags = flags - {"--graph", "--help"}
    if "--help" in flags or unknown_flags or len(args) > 1:
        print(__doc__.strip())
        return 0 if "--help" in flags and not unknown_flags else 2
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.abspath(args[0] if args else os.path.join(here, "..", "src"))
    if not os.path.isdir(src):
        print(f"no source dir: {src}")
        return 2
    shown = os.path.basename(src)  # files print as src/store/mod.rs

    def show(rel: str) -> str:
        return f"{shown}/{rel}"

    graph, nodes = build_graph(src)

    if "--graph" in flags:
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f"edge: {show(a)} -> {show(b)}: {', '.join(graph[a][b])}")

    found = circles(graph, nodes)
    for component in found:
        print("circle: " + " <-> ".join(show(f) for f in component))
        inside = set(component)
        for a in component:
            for b in sorted(graph.get(a, {})):
                if b in inside:
                    print(f"  {show(a)} -> {show(b)}: {', '.join(graph[a][b])}")

    rank = {name: i for i, name in enumerate(LAYERS)}
    unknown = sorted({layer for layer in map(layer_of, nodes)
                      if layer is not None and layer not in rank})
    for layer in unknown:
        files_in = ", ".join(show(f) for f in nodes if layer_of(f) == layer)
        print(f"layer: {layer} is not in LAYERS of {os.path.basename(__file__)}"
              f" (move it under a layer or add it to the list): {files_in}")

    upward = 0
    for a in sorted(graph):
        for b in sorted(graph[a]):
            la, lb = layer_of(a), layer_of(b)
            if la in rank and lb in rank and rank[lb] > rank[la]:
                upward += 1
                print(f"layer: {show(a)} ({la}) -> {show(b)} ({lb}): {', '.join(graph[a][b])}")

    if found or upward or unknown:
        summary = f"{len(found)} import circles, {upward} upward dependencies"
        if unknown:
            summary += f", {len(unknown)} unknown layers"
        print(summary)
        return 1
    print(f"layers ok: {len(nodes)} files, no import circles")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
