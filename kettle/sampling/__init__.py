"""Sampling: validated per-request parameters, pure logit transforms, the sampler chain and the
streaming stop-string matcher. Knows nothing of models, engines or HTTP."""

from kettle.sampling.params import Mirostat, NumPredict, SamplingParams
from kettle.sampling.sampler import Sampler, build_chain
from kettle.sampling.stop import StopMatcher
from kettle.sampling.transforms import Candidates

__all__ = [
    "Candidates", "Mirostat", "NumPredict", "Sampler", "SamplingParams", "StopMatcher", "build_chain",
]
