"""Weight-sharing supernets of the RAM-NAS MobileNetV3 space: elastic layers, extraction."""

from hwnas.supernet.elastic import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticConvBnAct,
    ElasticLinear,
    ElasticMBConv,
    ElasticModule,
    ElasticSE,
)
from hwnas.supernet.mbv3 import MBv3Supernet, build_supernet
from hwnas.supernet.static import MBConv, SqueezeExcite

__all__ = [
    "ElasticBatchNorm2d",
    "ElasticConv2d",
    "ElasticConvBnAct",
    "ElasticLinear",
    "ElasticMBConv",
    "ElasticModule",
    "ElasticSE",
    "MBConv",
    "MBv3Supernet",
    "SqueezeExcite",
    "build_supernet",
]
