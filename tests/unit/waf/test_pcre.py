from __future__ import annotations

import pytest

from garrison.waf.pcre import Untranslatable, compile_rx, translate


@pytest.mark.parametrize(
    ("pcre", "subject", "matches"),
    [
        pytest.param(r"[[:alpha:]]+\z", "abc", True, id="posix class and \\z"),
        pytest.param(r"\x{41}", "A", True, id="braced hex escape"),
        pytest.param(r"(?<!a|bc)x", "bcx", False, id="lookbehind alternatives of different widths"),
        pytest.param(r"(?<!a|bc)x", "dx", True, id="lookbehind allows other prefixes"),
        pytest.param(r"\w", "\xe9", False, id="word class is ASCII only, as PCRE without UCP"),
        pytest.param(r"a.b", "a\nb", True, id="dot matches newline (PCRE_DOTALL)"),
        pytest.param(r"[]a]", "]", True, id="leading bracket is literal"),
    ],
)
def test_translation_keeps_pcre_meaning(pcre: str, subject: str, matches: bool) -> None:
    assert (compile_rx(pcre).search(subject) is not None) is matches


@pytest.mark.parametrize("pcre", [r"(?|a|b)", r"(*UTF)a", r"\p{L}", r"[[:^alpha:]]"])
def test_untranslatable_constructs_are_refused(pcre: str) -> None:
    with pytest.raises(Untranslatable):
        compile_rx(pcre)


def test_named_groups_become_python_syntax() -> None:
    assert translate(r"(?<x>a)\k<x>") == "(?P<x>a)(?P=x)"
