"""CNN alone: 1-D convolutions over each packet's bytes, pooled across packets.

python run.py --model=cnn
"""

import ml_collections

from stfe_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    """The default configuration with the CNN model."""
    config = default.get_config()
    config.model.name = "cnn"
    return config
