"""Registers the project's parts in mmengine's registries, so configs name them by string
(`dict(type='DeSa2VAModel', ...)`: `models.builder.build_model`). Imported by configs through `custom_imports`."""
from mmengine.registry import DATA_SAMPLERS, DATASETS, FUNCTIONS, MODELS
from xtuner.dataset.samplers import LengthGroupedSampler

from . import hooks  # noqa: F401  (registers TrainableWeightsCheckpointHook)
from .datasets.base import collate
from .datasets.chatunivi import ChatUniViDataset
from .datasets.gcg import GCGDataset
from .datasets.llava import LLaVADataset
from .datasets.mevis_revos import RefVOSDataset
from .datasets.mixing import KindGroupedSampler, MixedDataset
from .datasets.osprey import OspreyDataset
from .datasets.ref_sav import RefSAVDataset
from .datasets.ref_ytvos import DAVIS17Dataset, RefYTVOSDataset
from .datasets.refcoco import RefCOCODataset
from .models.builder import build_from_config

MODELS.register_module(name="DeSa2VAModel", module=build_from_config, force=True)
for _cls in (RefCOCODataset, RefVOSDataset, RefYTVOSDataset, DAVIS17Dataset, RefSAVDataset, ChatUniViDataset,
             LLaVADataset, GCGDataset, OspreyDataset, MixedDataset):
    DATASETS.register_module(module=_cls, force=True)


DATA_SAMPLERS.register_module(module=KindGroupedSampler, force=True)
DATA_SAMPLERS.register_module(module=LengthGroupedSampler, force=True)  # xtuner's (Sa2VA's), by modality_length
FUNCTIONS.register_module(name="desa2va_collate", module=collate, force=True)
