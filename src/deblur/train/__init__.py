"""Training with Ray Train (``deblur train``): the TorchTrainer loop and its Ray Datasets."""
