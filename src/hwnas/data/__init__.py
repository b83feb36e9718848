"""Small image-classification datasets as in-memory tensors, with torch-only augmentation.

``load_dataset(name)`` returns an :class:`ImageData` with train/val/test splits (the
validation split is held out of the training set): ``digits`` (scikit-learn's 8x8 digits,
embedded, the default for quick runs), ``cifar10``, ``mnist``, ``flowers17`` (read from
the data dir with :func:`hwnas.config.data_file`) and ``folder:PATH`` (an image folder).
"""

from hwnas.data.datasets import (
    DATASETS,
    ImageData,
    folder_spec,
    load_dataset,
    load_image_folder,
)
from hwnas.data.loader import BatchIterator, augment_batch

__all__ = [
    "DATASETS",
    "BatchIterator",
    "ImageData",
    "augment_batch",
    "folder_spec",
    "load_dataset",
    "load_image_folder",
]
