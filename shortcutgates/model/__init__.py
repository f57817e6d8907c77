"""The lens finder: preprocessing, augmentation, the torch dataset, the network, training,
checkpoints, evaluation, and the ways a model comes in to be gated (scorers: checkpoint,
``.onnx``, ``.pt2``, a callable). Importing the package imports nothing."""
