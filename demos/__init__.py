"""The demos: SCS networks trained on Fashion-MNIST and CIFAR-10 in PyTorch and JAX.

Run from a checkout of the repository (the installed package holds the two
libraries only): ``python demos/fashion_mnist_torch.py v1``, ``python -m demos
DATASET FRAMEWORK``. README, "Code layout", maps the modules.
"""
