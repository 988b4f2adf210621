"""Training: train state, jit-compiled steps, the loop, checkpoints.

results = train_and_evaluate(config, Dataset(...), workdir)
"""

from stfe_jax.train.dataset import Dataset
from stfe_jax.train.loop import train_and_evaluate

__all__ = ["Dataset", "train_and_evaluate"]
