"""Every "docs/protocol.md §N.N" cited in the code and the docs names a section that exists.

protocol.md keeps a numbered heading per section (``## 6. Triggers``, ``### 6.6 Discovery
triggers``); code and docs cite them as ``protocol.md §6.6`` (or ``protocol §6.6`` in a link's
text). A renumbered or removed section would leave those citations pointing nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ")
CITATION = re.compile(r"protocol(?:\.md)? ?§ ?(\d+(?:\.\d+)*)")
WHERE = ("iii_rx", "tests", "benchmarks", "examples", "docs", "notebooks")


def sections() -> set[str]:
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    return {m.group(1) for line in text.splitlines() if (m := HEADING.match(line))}


def citations() -> list[tuple[str, str]]:
    files = [ROOT / "README.md"]
    for top in WHERE:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".md", ".ipynb")]
    found = []
    for path in files:
        if "node_modules" in path.parts:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
            for m in CITATION.finditer(line):
                found.append((f"{path.relative_to(ROOT)}:{n + 1}", m.group(1).rstrip(".")))
    return found


def test_protocol_keeps_the_numbering() -> None:
    have = sections()
    # The numbering follows the protocol's twelve parts, with their sub-sections.
    assert {str(n) for n in range(13)} <= have
    assert {"2.10", "3.18", "6.5.3", "6.6", "7.4", "9.3", "10.2", "12.9"} <= have


def test_every_citation_names_a_section() -> None:
    have = sections()
    missing = [f"{where}: §{number}" for where, number in citations() if number not in have]
    assert not missing, "citations of sections protocol.md does not have:\n" + "\n".join(missing)
