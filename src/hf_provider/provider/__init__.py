"""The Provider facade: the one entry point every caller (Python, HTTP routes, CLI, Ray replicas) goes through.

`facade.py` is the public class; the path of a request to a scheduler (fallbacks, canary, breaker, admission) and
the refusals before one are collaborators it composes.
"""

from hf_provider.provider.facade import Answer, Params, Provider, TextStream

__all__ = ["Answer", "Params", "Provider", "TextStream"]
