"""Authorization: rules compiled once into an index; deny > allow > default deny (ARCHITECTURE §2.6)."""

from garrison.policy.compiler import compile_policies
from garrison.policy.explain import Explanation, RuleTrace, explain, format_explanation
from garrison.policy.index import PolicyIndex
from garrison.policy.model import CompiledRule, Decision
from garrison.policy.naive import naive_decide

__all__ = [
    "CompiledRule",
    "Decision",
    "Explanation",
    "PolicyIndex",
    "RuleTrace",
    "compile_policies",
    "explain",
    "format_explanation",
    "naive_decide",
]
