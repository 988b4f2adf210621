"""LSTM alone: each packet's embedded bytes, in order, through an LSTM.

python run.py --model=lstm
"""

import ml_collections

from stfe_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    """The default configuration with the LSTM model."""
    config = default.get_config()
    config.model.name = "lstm"
    return config
