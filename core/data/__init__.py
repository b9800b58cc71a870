"""Datasets: built-in, torchvision, image folders, CSV, ZIP, all as cached uint8 tensors.

Import from the module that holds what you need; this package's own import loads nothing,
so the torch-free modules (``catalog``, ``manifests``, ``memory``, ``preprocess``,
``report``) stay torch-free:

    from core.data.preprocess import Preprocessing
    from core.data.registry import load_dataset

    splits = load_dataset("digits", Preprocessing(28, 28, channels=1))
    splits.train.images  # uint8 N x 1 x 28 x 28, through prep.to_uint8
"""
