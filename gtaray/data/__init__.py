"""Datasets: the built-in synthetic pair, GTA5 / SYNTHIA / Cityscapes loaders, label maps."""
