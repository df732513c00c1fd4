"""Architectures taking inputs in [0,1] (normalisation inside), a registry and a checkpoint loader.

    model = create_model("resnet18", num_classes=10)      # names: list_models()
    model = load_model("run/checkpoints/best.pt")         # rebuilt from its rf_config, eval mode
"""
from .factory import MODELS, create_model, list_models, load_model
from .modes import eval_mode, set_mode
from .normalize import Normalize, default_stats
from . import mlp, preact_resnet, resnet, small_cnn, wide_resnet  # noqa: F401  (registers the builders)

__all__ = ["MODELS", "Normalize", "create_model", "default_stats", "eval_mode", "list_models", "load_model", "set_mode"]
