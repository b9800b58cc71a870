"""Datasets: built-in, torchvision, image folders, CSV, ZIP, all as cached uint8 tensors.

    from core.data import load_dataset
    from core.data.preprocess import Preprocessing

    splits = load_dataset("digits", Preprocessing(28, 28, channels=1))
    splits.train.images  # uint8 N x 1 x 28 x 28, through prep.to_uint8
"""

from core.data.builtin import BUILTIN_DATASETS
from core.data.registry import (
    dataset_info,
    delete_dataset,
    import_dataset,
    list_datasets,
    load_dataset,
    sample_images,
)
from core.data.report import DatasetInfo, ImportReport
from core.data.splits import DataSplits, TensorSet, stratified_split
from core.data.torchvision_sets import TORCHVISION_DATASETS

__all__ = [
    "BUILTIN_DATASETS",
    "TORCHVISION_DATASETS",
    "DataSplits",
    "DatasetInfo",
    "ImportReport",
    "TensorSet",
    "dataset_info",
    "delete_dataset",
    "import_dataset",
    "list_datasets",
    "load_dataset",
    "sample_images",
    "stratified_split",
]
