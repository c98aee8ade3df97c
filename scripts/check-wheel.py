"""Checks a biomero_rs wheel: it must load the system libsqlite3.so.0 and hold no SQLite copy.

    python scripts/check-wheel.py dist/biomero_rs-*.whl

For each wheel, fails (exit 1, one line per problem) unless:
- no file in the wheel is a SQLite library (no name containing "sqlite" that
  is a shared object, no ELF file other than the extension module);
- the extension's NEEDED entries include libsqlite3.so.0 and are otherwise
  libraries of the manylinux policy (glibc's);
- the extension defines no sqlite3_* symbol and holds no SQLite engine
  ("SQLite format 3" is the header every SQLite build writes), while
  sqlite3_open_v2 is an undefined symbol: SQLite's code comes from outside;
- it requires no glibc symbol version newer than its manylinux tag;
- its machine matches its platform tag.
Prints the listing and the NEEDED entries of each wheel. Needs pyelftools
(installed with auditwheel).
"""

from __future__ import annotations

import io
import re
import sys
import zipfile

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

#: The libraries the manylinux policies allow an extension to link (glibc's).
ALLOWED_NEEDED = {
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libutil.so.1",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
}
SQLITE_SONAME = "libsqlite3.so.0"
MACHINES = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}


def check(path: str) -> list[str]:
    problems: list[str] = []
    tag = re.search(r"-cp39-abi3-manylinux_(\d+)_(\d+)_(x86_64|aarch64)\.whl$", path)
    if not tag:
        return [f"{path}: not a cp39-abi3 manylinux wheel name"]
    glibc_max = (int(tag.group(1)), int(tag.group(2)))
    arch = tag.group(3)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        print(f"== {path}")
        for info in zf.infolist():
            print(f"  {info.file_size:>10}  {info.filename}")
        elves = {n: zf.read(n) for n in names if zf.read(n)[:4] == b"\x7fELF"}
    for name in names:
        base = name.rsplit("/", 1)[-1].lower()
        if "sqlite" in base and (".so" in base or name in elves):
            problems.append(f"{path}: contains a SQLite library: {name}")
    extensions = [n for n in elves if re.fullmatch(r"biomero_rs/_core\.abi3\.so", n)]
    for other in sorted(set(elves) - set(extensions)):
        problems.append(f"{path}: contains a shared library besides the extension: {other}")
    if len(extensions) != 1:
        return problems + [f"{path}: expected one biomero_rs/_core.abi3.so, found {extensions}"]
    data = elves[extensions[0]]
    elf = ELFFile(io.BytesIO(data))
    if elf["e_machine"] != MACHINES[arch]:
        problems.append(f"{path}: extension is {elf['e_machine']}, the tag says {arch}")
    needed = [
        tag.needed
        for sec in elf.iter_sections()
        if isinstance(sec, DynamicSection)
        for tag in sec.iter_tags()
        if tag.entry.d_tag == "DT_NEEDED"
    ]
    print(f"  NEEDED: {', '.join(needed)}")
    if SQLITE_SONAME not in needed:
        problems.append(f"{path}: the extension does not load {SQLITE_SONAME} (NEEDED: {needed})")
    for lib in needed:
        if lib != SQLITE_SONAME and lib not in ALLOWED_NEEDED:
            problems.append(f"{path}: the extension needs {lib}, outside the manylinux policy")
    dynsym = elf.get_section_by_name(".dynsym")
    defined = set()
    undefined = set()
    for sym in dynsym.iter_symbols() if dynsym else []:
        (undefined if sym["st_shndx"] == "SHN_UNDEF" else defined).add(sym.name)
    symtab = elf.get_section_by_name(".symtab")
    for sym in symtab.iter_symbols() if symtab else []:
        if sym["st_shndx"] != "SHN_UNDEF":
            defined.add(sym.name)
    inside = sorted(s for s in defined if s.startswith("sqlite3_"))
    if inside:
        problems.append(f"{path}: the extension defines SQLite functions: {inside[:5]}")
    if "sqlite3_open_v2" not in undefined:
        problems.append(f"{path}: sqlite3_open_v2 is not an external symbol of the extension")
    if b"SQLite format 3\x00" in data:
        problems.append(f"{path}: the extension holds a SQLite engine (its file header string)")
    versions = set()
    for sec in elf.iter_sections():
        if isinstance(sec, GNUVerNeedSection):
            for _verneed, auxes in sec.iter_versions():
                for aux in auxes:
                    m = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", aux.name)
                    if m:
                        versions.add((int(m.group(1)), int(m.group(2))))
    newest = max(versions, default=(0, 0))
    print(f"  newest glibc symbol version: {newest[0]}.{newest[1]}")
    if newest > glibc_max:
        problems.append(
            f"{path}: needs GLIBC_{newest[0]}.{newest[1]}, newer than its tag "
            f"manylinux_{glibc_max[0]}_{glibc_max[1]}"
        )
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    problems = [p for path in argv for p in check(path)]
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    if not problems:
        print(f"ok: {len(argv)} wheel(s) load the system {SQLITE_SONAME} and hold no SQLite copy")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
