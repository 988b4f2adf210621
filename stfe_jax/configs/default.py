"""Default configuration: the CNN-LSTM on 8 packets x 100 bytes per flow.

Every other config starts from this one and changes the ``model`` section (or, for
``tiny``, shrinks everything so the whole pipeline runs in seconds on a CPU).

    python run.py --model=cnn_lstm --set=train.steps=2000
"""

import ml_collections


def get_flows_config() -> ml_collections.ConfigDict:
    """How packets are cut into flows and flows into sample tensors."""
    flows = ml_collections.ConfigDict()
    flows.packets_per_flow = 8
    flows.bytes_per_packet = 100
    flows.idle_timeout_s = 120.0
    flows.active_timeout_s = 1800.0
    flows.mask_addresses = True
    flows.mask_ports = True
    flows.mask_ip_checksum_id = False
    flows.mask_ttl = False
    flows.mask_tcp_seq_ack = False
    flows.mask_tcp_timestamps = False
    flows.mask_ipv6_flow_label = False
    flows.vlan_in_key = False
    return flows


def get_labels_config() -> ml_collections.ConfigDict:
    """How ground truth becomes one label per flow."""
    labels = ml_collections.ConfigDict()
    labels.policy = "binary"
    labels.suspicious = "anomalous"  # "anomalous" | "drop" | "separate"
    labels.cic_timezone = "-03:00"
    return labels


def get_split_config() -> ml_collections.ConfigDict:
    """How flows are divided into train, validation and test."""
    split = ml_collections.ConfigDict()
    split.policy = "auto"  # "auto" | "random" | "time" | "capture"
    split.fractions = (0.7, 0.1, 0.2)
    split.seed = 0
    return split


def get_model_config() -> ml_collections.ConfigDict:
    """The network: its kind, its input encoding and its layer sizes."""
    model = ml_collections.ConfigDict()
    model.name = "cnn_lstm"  # "mlp" | "cnn" | "lstm" | "cnn_lstm"
    model.num_classes = 2  # replaced by the dataset's class count at training
    model.byte_encoding = "embedding"  # "embedding" | "onehot"
    model.embed_dim = 8  # features per byte token (embedding only)
    model.use_direction = True  # feed each packet's direction
    model.use_iat = True  # feed log1p of each packet's inter-arrival time (s)
    model.conv_features = (32, 64)  # channels of each 1-D convolution
    model.kernel_size = 3  # bytes
    model.pool_size = 2  # bytes; max-pooling window and stride
    model.pooling = "slices"  # max-pool as "slices" (fast) or "reduce_window"
    model.packet_features = 128  # per-packet vector after the convolutions
    model.lstm_hidden = 64
    model.mlp_hidden = (512, 128)
    model.head_hidden = 0  # 0: the classifier reads the features directly
    model.dropout_rate = 0.0
    model.dtype = "float32"  # compute dtype: "float32" | "bfloat16"
    return model


def get_train_config() -> ml_collections.ConfigDict:
    """The optimiser, its schedule, class balance, checkpoints and stopping."""
    train = ml_collections.ConfigDict()
    train.seed = 0
    train.batch_size = 256
    train.steps = 1200
    train.learning_rate = 1e-3
    train.warmup_steps = 100
    train.decay = "cosine"  # "cosine" | "linear" | "constant"
    train.end_learning_rate_factor = 0.01
    train.weight_decay = 1e-4
    train.grad_clip_norm = 1.0
    train.class_balance = "weighted"  # "weighted" loss | "sampled" batches | "none"
    train.log_every = 50
    train.eval_every = 200  # steps between validations (and checkpoints)
    train.early_stopping_patience = 5  # validations without improvement; 0: never
    train.resume = False
    train.stop_at_step = 0  # stop as if killed after this step (0: never)
    train.prefetch = 2  # batches prepared ahead on a host thread (0: none)
    train.data_parallel = True  # shard each batch over all local devices
    return train


def get_eval_config() -> ml_collections.ConfigDict:
    """Validation and test evaluation."""
    eval_config = ml_collections.ConfigDict()
    eval_config.batch_size = 1024
    eval_config.metric = "macro_f1"  # early stopping: "macro_f1" | "accuracy" | "loss"
    eval_config.threshold = "max_f1"  # anomaly threshold picked on validation
    eval_config.max_feature_flows = 20000  # train flows whose features are returned
    return eval_config


def get_config() -> ml_collections.ConfigDict:
    """The full default configuration (CNN-LSTM)."""
    config = ml_collections.ConfigDict()
    config.flows = get_flows_config()
    config.labels = get_labels_config()
    config.split = get_split_config()
    config.model = get_model_config()
    config.train = get_train_config()
    config.eval = get_eval_config()
    return config
