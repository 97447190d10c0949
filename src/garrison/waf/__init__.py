"""A CRS-compatible WAF: SecLang rules loaded once, executed over sans-IO requests (phases 1-2).

engine = WafEngine.load([setup_conf, rules_dir], paranoia_level=1)
result = engine.inspect(WafRequest("GET", "/?q=1"))

The engine needs the optional `waf` extra (msc-pyparser, hyperscan, libinjection): its names are
imported on first use, so `garrison.waf.config` and `garrison.waf.request` load without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from garrison.waf.request import RuleMatch, WafRequest, WafResult

if TYPE_CHECKING:
    from garrison.waf.engine import WafEngine, WafSettings
    from garrison.waf.rules import Unsupported

_LAZY = {
    "WafEngine": "garrison.waf.engine",
    "WafSettings": "garrison.waf.engine",
    "Unsupported": "garrison.waf.rules",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'garrison.waf' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["RuleMatch", "Unsupported", "WafEngine", "WafRequest", "WafResult", "WafSettings"]
