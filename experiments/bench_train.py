"""Training throughput of each model, and of PyTorch's CNN-LSTM beside ours on CPU.

Samples per second of a full training step (forward, backward, clipping, AdamW)
at batch 256 of 8 packets x 100 bytes, after warm-up, with the compile time
printed apart. On the CPU the same CNN-LSTM (embedding, Conv1d 32 and 64 with
MaxPool1d, a dense packet layer, LSTM 64, stock torch modules) runs in PyTorch in
the same process, with the same number of threads, alternating with ours in
rounds; the ratio of the medians is printed. With --device=gpu the JAX models run
on a GPU (when present) and the share of step time spent waiting for input is
printed.

  python experiments/bench_train.py                      # CPU, torch beside
  python experiments/bench_train.py --device=gpu
  python experiments/bench_train.py --models=cnn_lstm --rounds=5

Needs ``requirements-bench.txt`` (torch==2.13.0, CPU build) for the baseline.

TODO: on a 2-core machine oversubscribed by other work, torch with
``--omp_wait_policy=PASSIVE`` measured within 1.4x of our CNN-LSTM step (3.4-3.7x
with torch's default waiting); our step is dominated by XLA's CPU convolutions
(forward and backward of the 32- and 64-channel layers), which no formulation
tried here (im2col, shifted matmuls, oneDNN/XNNPACK flags) made faster.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS
flags.DEFINE_enum("device", "cpu", ["cpu", "gpu"], "Where the JAX models run.")
flags.DEFINE_list("models", ["mlp", "cnn", "lstm", "cnn_lstm"], "Models to time.")
flags.DEFINE_integer("batch_size", 256, "Flows per training step.")
flags.DEFINE_integer("packets_per_flow", 8, "Packets per flow sample.")
flags.DEFINE_integer("bytes_per_packet", 100, "Bytes per packet sample.")
flags.DEFINE_integer("warmup_steps", 2, "Untimed steps after the compiling one.")
flags.DEFINE_integer("steps", 8, "Timed steps per round.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds of JAX and torch CNN-LSTM.")
flags.DEFINE_bool("torch", True, "Time PyTorch's CNN-LSTM beside ours (CPU only).")
flags.DEFINE_bool(
    "reduce_window", True, "Also time our CNN-LSTM with plain nn.max_pool (CPU)."
)
flags.DEFINE_string(
    "omp_wait_policy",
    None,
    "OMP_WAIT_POLICY for torch's OpenMP threads (PASSIVE or ACTIVE); unset keeps "
    "torch's default. On a machine busy with other work, PASSIVE is much kinder "
    "to torch.",
)
flags.DEFINE_string("out", None, "Write the figures as JSON here.")


def cpu_threads() -> int:
    """Cores this process may use: XLA's CPU backend sizes its pool by them."""
    return len(os.sched_getaffinity(0))


class JaxTrainer:
    """One model's jit-compiled train step fed from the host batch iterator."""

    def __init__(self, name: str, dataset, pooling: str = "slices"):
        import jax
        import numpy as np

        from stfe_jax.configs import get_config
        from stfe_jax.models import build_model
        from stfe_jax.store.batches import iterate_train_batches
        from stfe_jax.train.state import create_train_state, learning_rate_schedule
        from stfe_jax.train.steps import make_sharding, make_train_step

        config = get_config(name)
        config.model.pooling = pooling
        config.flows.packets_per_flow = FLAGS.packets_per_flow
        config.flows.bytes_per_packet = FLAGS.bytes_per_packet
        config.train.batch_size = FLAGS.batch_size
        self.sharding = make_sharding()
        model = build_model(config.model)
        self.state = create_train_state(
            model, dataset.model_arrays, config.train, self.sharding.replicated
        )
        self.step_fn = make_train_step(
            np.ones(len(dataset.class_names), np.float32),
            self.sharding,
            schedule=learning_rate_schedule(config.train),
        )
        self.batches = iterate_train_batches(
            dataset.model_arrays,
            dataset.train_idx,
            FLAGS.batch_size,
            seed=0,
            labels=dataset.labels,
            transform=self.sharding.put_batch,  # onto the devices, ahead
        )
        self.input_wait_s = 0.0
        self.num_params = sum(x.size for x in jax.tree.leaves(self.state.params))

    def step(self):
        started = time.perf_counter()
        batch = next(self.batches)
        self.input_wait_s += time.perf_counter() - started
        self.state, metrics = self.step_fn(self.state, batch)
        return metrics

    def run(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps (waits for the device)."""
        import jax

        started = time.perf_counter()
        for _ in range(steps):
            metrics = self.step()
        jax.block_until_ready(metrics)
        return (time.perf_counter() - started) / steps

    def close(self):
        self.batches.close()


def build_torch_cnn_lstm(num_classes: int):
    """PyTorch CNN-LSTM with the layer sizes of our default config."""
    import torch
    from torch import nn

    from stfe_jax.configs import get_config

    model_config = get_config("cnn_lstm").model
    bytes_per_packet = FLAGS.bytes_per_packet

    class TorchCNNLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(257, model_config.embed_dim)
            layers, width, length = [], model_config.embed_dim, bytes_per_packet
            for features in model_config.conv_features:
                layers += [
                    nn.Conv1d(
                        width,
                        features,
                        model_config.kernel_size,
                        padding=model_config.kernel_size // 2,
                    ),
                    nn.ReLU(),
                    nn.MaxPool1d(model_config.pool_size),
                ]
                width, length = features, length // model_config.pool_size
            self.convs = nn.Sequential(*layers)
            self.packet = nn.Linear(width * length, model_config.packet_features)
            self.lstm = nn.LSTM(
                model_config.packet_features + 2,
                model_config.lstm_hidden,
                batch_first=True,
            )
            self.classifier = nn.Linear(model_config.lstm_hidden, num_classes)

        def forward(self, batch):
            packets = batch["packets"].long()
            b, num_packets, num_bytes = packets.shape
            n_packets = batch["n_packets"].long()
            real_packet = torch.arange(num_packets)[None, :] < n_packets[:, None]
            real_byte = (
                torch.arange(num_bytes)[None, None, :]
                < batch["packet_caplen"].long()[:, :, None]
            ) & real_packet[:, :, None]
            tokens = torch.where(real_byte, packets, torch.full_like(packets, 256))
            x = self.embed(tokens).view(b * num_packets, num_bytes, -1)
            x = self.convs(x.transpose(1, 2)).flatten(1)
            x = torch.relu(self.packet(x)).view(b, num_packets, -1)
            side = (
                torch.stack(
                    [
                        batch["direction"].float(),
                        torch.log1p(batch["iat_s"].clamp(min=0)),
                    ],
                    dim=-1,
                )
                * real_packet[:, :, None]
            )
            outputs, _ = self.lstm(torch.cat([x, side], dim=-1))
            last = outputs[torch.arange(b), (n_packets - 1).clamp(min=0)]
            return self.classifier(last)

    return TorchCNNLSTM()


class TorchTrainer:
    """PyTorch's CNN-LSTM trained like ours: weighted CE, clipping, AdamW."""

    def __init__(self, dataset):
        import torch

        from stfe_jax.store.batches import iterate_train_batches

        self.torch = torch
        self.model = build_torch_cnn_lstm(len(dataset.class_names))
        self.num_params = sum(p.numel() for p in self.model.parameters())
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=1e-3, weight_decay=1e-4
        )
        self.loss = torch.nn.CrossEntropyLoss(
            weight=torch.ones(len(dataset.class_names))
        )
        self.batches = iterate_train_batches(
            dataset.model_arrays,
            dataset.train_idx,
            FLAGS.batch_size,
            seed=0,
            labels=dataset.labels,
        )

    def step(self):
        torch = self.torch
        batch = {
            name: torch.from_numpy(value) for name, value in next(self.batches).items()
        }
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.model(batch), batch["label"].long())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return loss

    def run(self, steps: int) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - started) / steps

    def close(self):
        self.batches.close()


def time_jax_model(name: str, dataset, pooling: str = "slices") -> dict:
    """Compile time, then samples/s over ``rounds`` x ``steps`` timed steps."""
    trainer = JaxTrainer(name, dataset, pooling)
    compile_s = trainer.run(1)
    trainer.run(FLAGS.warmup_steps)
    trainer.input_wait_s = 0.0
    per_step = [trainer.run(FLAGS.steps) for _ in range(FLAGS.rounds)]
    input_share = trainer.input_wait_s / (sum(per_step) * FLAGS.steps)
    trainer.close()
    step_s = statistics.median(per_step)
    return {
        "model": name if pooling == "slices" else f"{name} (nn.max_pool)",
        "compile_s": compile_s,
        "step_ms": 1e3 * step_s,
        "samples_per_s": FLAGS.batch_size / step_s,
        "input_wait_share": input_share,
    }


def compare_with_torch(dataset) -> dict:
    """Our CNN-LSTM and torch's, alternating rounds; medians and their ratio."""
    import torch

    threads = cpu_threads()
    torch.set_num_threads(threads)
    ours, theirs = JaxTrainer("cnn_lstm", dataset), TorchTrainer(dataset)
    params = {"jax_params": ours.num_params, "torch_params": theirs.num_params}
    compile_s = ours.run(1)
    ours.run(FLAGS.warmup_steps)
    theirs.run(1 + FLAGS.warmup_steps)
    ours_s, theirs_s = [], []
    for _ in range(FLAGS.rounds):
        ours_s.append(ours.run(FLAGS.steps))
        theirs_s.append(theirs.run(FLAGS.steps))
    ours.close()
    theirs.close()
    ours_step, theirs_step = statistics.median(ours_s), statistics.median(theirs_s)
    return {
        **params,
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "torch default"),
        "torch_version": torch.__version__,
        "jax_compile_s": compile_s,
        "jax_step_ms": 1e3 * ours_step,
        "torch_step_ms": 1e3 * theirs_step,
        "jax_samples_per_s": FLAGS.batch_size / ours_step,
        "torch_samples_per_s": FLAGS.batch_size / theirs_step,
        "ratio": theirs_step / ours_step,
        "jax_rounds_ms": [1e3 * s for s in ours_s],
        "torch_rounds_ms": [1e3 * s for s in theirs_s],
    }


def main(argv):
    del argv
    if FLAGS.device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    if FLAGS.omp_wait_policy:
        os.environ["OMP_WAIT_POLICY"] = FLAGS.omp_wait_policy  # before torch loads
    import jax

    from stfe_jax.train.toy import toy_dataset

    if FLAGS.device == "gpu" and not any(d.platform == "gpu" for d in jax.devices()):
        raise SystemExit(f"--device=gpu: no GPU visible to JAX ({jax.devices()})")
    devices = jax.local_devices()
    print(
        f"JAX {jax.__version__} on {len(devices)} x {devices[0].device_kind}; "
        f"batch {FLAGS.batch_size} of {FLAGS.packets_per_flow} packets x "
        f"{FLAGS.bytes_per_packet} bytes; {FLAGS.warmup_steps} warm-up steps, "
        f"{FLAGS.rounds} rounds of {FLAGS.steps} timed steps (median)"
    )
    dataset = toy_dataset(
        4 * FLAGS.batch_size,
        FLAGS.packets_per_flow,
        FLAGS.bytes_per_packet,
        fractions=(1.0, 0.0, 0.0),
    )
    figures = {"device": FLAGS.device, "models": []}
    for name in FLAGS.models:
        row = time_jax_model(name, dataset)
        figures["models"].append(row)
        print(
            f"{row['model']:>10}: {row['samples_per_s']:8.0f} samples/s "
            f"({row['step_ms']:.0f} ms/step), compile {row['compile_s']:.1f} s, "
            f"input wait {100 * row['input_wait_share']:.1f}% of step time"
        )
    if FLAGS.device == "cpu" and FLAGS.reduce_window:
        row = time_jax_model("cnn_lstm", dataset, pooling="reduce_window")
        figures["models"].append(row)
        print(
            f"cnn_lstm with nn.max_pool: {row['samples_per_s']:.0f} samples/s "
            f"({row['step_ms']:.0f} ms/step), compile {row['compile_s']:.1f} s"
        )
    if FLAGS.device == "cpu" and FLAGS.torch:
        torch_figures = compare_with_torch(dataset)
        figures["torch"] = torch_figures
        print(
            f"Threads: JAX (XLA CPU) {torch_figures['threads']}, torch "
            f"{torch_figures['torch_version']} set_num_threads"
            f"({torch_figures['threads']}), OMP_WAIT_POLICY "
            f"{torch_figures['omp_wait_policy']}; parameters: JAX "
            f"{torch_figures['jax_params']}, torch {torch_figures['torch_params']} "
            "(torch's LSTM has two bias vectors)"
        )
        print(
            f"CNN-LSTM side by side: JAX {torch_figures['jax_samples_per_s']:.0f} "
            f"samples/s ({torch_figures['jax_step_ms']:.0f} ms/step), torch "
            f"{torch_figures['torch_samples_per_s']:.0f} samples/s "
            f"({torch_figures['torch_step_ms']:.0f} ms/step)"
        )
        print(
            f"Speed ratio JAX/torch CNN-LSTM: {torch_figures['ratio']:.2f}x (bar: 2x)"
        )
    if FLAGS.out:
        pathlib.Path(FLAGS.out).write_text(json.dumps(figures, indent=2) + "\n")
    logging.info("Figures: %s", figures)


if __name__ == "__main__":
    app.run(main)
