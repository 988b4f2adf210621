"""MLP over the flattened flow: every byte of every packet in one vector.

python run.py --model=mlp
"""

import ml_collections

from stfe_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    """The default configuration with the MLP model."""
    config = default.get_config()
    config.model.name = "mlp"
    return config
