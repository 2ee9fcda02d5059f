"""Code generation: arena planning (plan) and C emission (emit) from the quantized IR."""

from .emit import Summary, emit
from .plan import Plan, check_plan, plan_graph

__all__ = ["Plan", "Summary", "check_plan", "emit", "plan_graph"]
