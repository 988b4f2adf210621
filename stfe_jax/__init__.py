"""stfe-jax: spatial-temporal features of network traffic for anomaly detection.

Data flows one way through the subpackages: ``capture`` (capture files to packet
columns), ``flows`` (packets to flow sample tensors), ``labels`` (a label per flow),
``store`` (memory-mapped tensors, splits and batches), ``models``, ``train``,
``evaluate`` and ``detect``.
"""

__version__ = "0.1.0"
