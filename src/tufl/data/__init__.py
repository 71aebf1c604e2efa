"""Datasets, per-sample transforms, target views, loaders, class index and check-data.

Typical use::

    from tufl.data import build_dataset, SourceSamples, SourceAugConfig, InfiniteLoader

    gta = build_dataset("gta5", "/data/gta5", "train", 19, resize=(1280, 720))
    loader = InfiniteLoader(SourceSamples(gta, SourceAugConfig()), batch_size=2, seed=0)
    batch = next(loader)  # {"image": uint8 [2, 3, 512, 512], "label": int64 [2, 512, 512], ...}
"""

from tufl.data.acdc import ACDCDataset
from tufl.data.base import SampleFiles, SegDataset, read_name_list
from tufl.data.bdd100k import BDD100KDataset
from tufl.data.check import CheckReport, Issue, check_dataset, format_report
from tufl.data.cityscapes import CityscapesDataset
from tufl.data.class_index import ClassIndex, dataset_fingerprint
from tufl.data.crosscity import CrossCityDataset
from tufl.data.dark_zurich import DarkZurichDataset
from tufl.data.registry import DATASETS, build_dataset
from tufl.data.gta5 import GTA5Dataset
from tufl.data.io import BadFileError, DataError, LayoutError
from tufl.data.loader import InfiniteLoader, eval_loader
from tufl.data.mapillary import MapillaryDataset
from tufl.data.samples import EvalSamples, SampleKey, SourceSamples, TargetPairs, key_rng
from tufl.data.photometric import (
    PhotometricParams,
    apply_photometric,
    photometric_batch,
    sample_photometric,
)
from tufl.data.synthia import SynthiaDataset
from tufl.data.transforms import PhotometricConfig, SourceAugConfig, augment_source, photometric
from tufl.data.views import (
    AffineConfig,
    AffineParams,
    TargetPair,
    TargetViewConfig,
    affine_theta,
    make_target_pair,
    sample_affine,
    warp_to_strong,
)

__all__ = [
    "DATASETS",
    "ACDCDataset",
    "AffineConfig",
    "AffineParams",
    "BDD100KDataset",
    "BadFileError",
    "CheckReport",
    "CityscapesDataset",
    "ClassIndex",
    "CrossCityDataset",
    "DarkZurichDataset",
    "DataError",
    "EvalSamples",
    "GTA5Dataset",
    "InfiniteLoader",
    "Issue",
    "LayoutError",
    "MapillaryDataset",
    "PhotometricConfig",
    "PhotometricParams",
    "SampleFiles",
    "SampleKey",
    "SegDataset",
    "SourceAugConfig",
    "SourceSamples",
    "SynthiaDataset",
    "TargetPair",
    "TargetPairs",
    "TargetViewConfig",
    "affine_theta",
    "apply_photometric",
    "augment_source",
    "build_dataset",
    "check_dataset",
    "dataset_fingerprint",
    "eval_loader",
    "format_report",
    "key_rng",
    "make_target_pair",
    "photometric",
    "photometric_batch",
    "read_name_list",
    "sample_affine",
    "sample_photometric",
    "warp_to_strong",
]
