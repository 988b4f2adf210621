"""CNN-LSTM: a CNN shared across packets learns spatial features, an LSTM temporal.

python run.py --model=cnn_lstm
"""

import ml_collections

from stfe_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
    """The default configuration (CNN-LSTM)."""
    config = default.get_config()
    config.model.name = "cnn_lstm"
    return config
