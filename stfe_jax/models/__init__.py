"""Flow classifiers (Flax linen, pure): MLP, CNN, LSTM and CNN-LSTM.

model = build_model(config.model)
variables = model.init(rng, batch)
logits = model.apply(variables, batch)
features = model.apply(variables, batch, method="features")
"""

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from stfe_jax.models.base import FlowModel
from stfe_jax.models.cnn import CNN
from stfe_jax.models.cnn_lstm import CNNLSTM
from stfe_jax.models.lstm import LSTM
from stfe_jax.models.mlp import MLP

MODEL_CLASSES: dict[str, type[FlowModel]] = {
    "mlp": MLP,
    "cnn": CNN,
    "lstm": LSTM,
    "cnn_lstm": CNNLSTM,
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_model(model_config: ml_collections.ConfigDict) -> nn.Module:
    """The model named by ``model_config.name``, sized by the other fields.

    Each config field whose name is a field of the model class is passed on
    (``dtype`` as the compute dtype; parameters stay float32).
    """
    name = model_config.name
    if name not in MODEL_CLASSES:
        raise ValueError(
            f"unknown model {name!r}; expected one of {sorted(MODEL_CLASSES)}"
        )
    if model_config.dtype not in DTYPES:
        raise ValueError(
            f"unknown model dtype {model_config.dtype!r}; "
            f"expected one of {list(DTYPES)}"
        )
    model_class = MODEL_CLASSES[name]
    field_names = {field.name for field in dataclasses.fields(model_class)}
    kwargs = {
        key: value
        for key, value in model_config.items()
        if key in field_names and key not in ("name", "parent", "dtype")
    }
    return model_class(dtype=DTYPES[model_config.dtype], **kwargs)
