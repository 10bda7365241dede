"""gapkit: the modality gap, its Gaussian mixture and the GMM-guided adaptive loss for audio-visual learning.

A reproducible companion to "Quantifying Multimodal Imbalance: A GMM-Guided Adaptive
Loss for Audio-Visual Learning" (Liu, Yu, Liu; arXiv 2510.21797v1).
"""
from .gap import collect_gaps, collect_outputs, modality_gap
from .losses import adaptive_loss, annealing_coefficient, warmup_loss
from .mixture import GapMixture
from .models import AVClassifier

__version__ = "0.1.0"

__all__ = ["AVClassifier", "GapMixture", "adaptive_loss", "annealing_coefficient", "collect_gaps",
           "collect_outputs", "modality_gap", "warmup_loss"]
