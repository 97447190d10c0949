"""A CRS-compatible WAF: SecLang rules loaded once, executed over sans-IO requests (phases 1-2).

engine = WafEngine.load([setup_conf, rules_dir], paranoia_level=1)
result = engine.inspect(WafRequest("GET", "/?q=1"))
"""

from garrison.waf.engine import WafEngine, WafSettings
from garrison.waf.request import RuleMatch, WafRequest, WafResult
from garrison.waf.rules import Unsupported

__all__ = ["RuleMatch", "Unsupported", "WafEngine", "WafRequest", "WafResult", "WafSettings"]
