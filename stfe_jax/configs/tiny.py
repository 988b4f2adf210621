"""A tiny configuration for tests: small flows, small layers, a few steps.

The whole pipeline (preprocess, train, evaluate) runs in seconds on a CPU. Pick the
model with ``get_config(model="cnn")`` or ``stfe_jax.configs.get_config(m, tiny=True)``.
"""

import ml_collections

from stfe_jax.configs import default


def get_config(model: str = "cnn_lstm") -> ml_collections.ConfigDict:
    """The tiny configuration of ``model``."""
    config = default.get_config()
    config.flows.packets_per_flow = 4
    config.flows.bytes_per_packet = 32

    config.model.name = model
    config.model.embed_dim = 4
    config.model.conv_features = (8, 16)
    config.model.packet_features = 16
    config.model.lstm_hidden = 16
    config.model.mlp_hidden = (32, 16)

    config.train.batch_size = 32
    config.train.steps = 100
    config.train.learning_rate = 1e-2
    config.train.warmup_steps = 5
    config.train.log_every = 10
    config.train.eval_every = 25
    config.train.early_stopping_patience = 0

    config.eval.batch_size = 64
    config.eval.max_feature_flows = 2000
    return config
