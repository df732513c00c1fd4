"""Architectures taking inputs in [0,1] (normalisation inside), a registry and a checkpoint loader.

    model = create_model("resnet18", num_classes=10)      # names: list_models()
    model = load_model("run/checkpoints/best.pt")         # rebuilt from info(model).config, eval mode
    model = load_model("hf-hub:ORG/NAME")                 # a model repository (export --hub-dir; models/hub.py)
    model = create_model("vit_base_patch16_224", 200)     # or "timm:swin_tiny_patch4_window7_224"
    report = load_pretrained(model, "ares_vit_b.pth")     # a timm state dict; the head is left new
    prepare_finetune(model, "adapter")                    # full | linear | adapter | lora
    model, report = load_foreign("wrn34_10", "TRADES_wrn34.pt")   # weights trained with other code
    export_plain(model, "release/wrn34")                  # plain .pt/.safetensors + .json, normalisation inside
"""
from .factory import MODELS, create_model, list_models
from .info import ModelInfo  # read it with models.info.info(model): the name `info` stays the module's
from .modes import eval_mode, set_mode
from .normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize, default_stats, parse_stats
from . import mlp, preact_resnet, resnet, small_cnn, vit, wide_resnet  # noqa: F401  (registers the builders)
from .pretrained import find_head, load_pretrained, replace_head
from .peft import (attack_view, export_file, export_merged, load_peft, peft_state_dict, prepare_finetune,
                   trainable_parameters)
from .loading import load_model
from . import hub  # noqa: F401  (registers the hf-hub: checkpoint reader with checkpoint.load)
from .export import export_plain, plain_state_dict
from .foreign import WithNormalize, describe as describe_foreign, load_factory, load_foreign

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MODELS", "ModelInfo", "Normalize", "WithNormalize", "attack_view",
           "create_model", "default_stats", "describe_foreign", "eval_mode", "export_file", "export_merged",
           "export_plain", "find_head", "list_models", "load_factory", "load_foreign", "load_model",
           "load_peft", "load_pretrained", "parse_stats", "peft_state_dict", "plain_state_dict", "prepare_finetune",
           "replace_head", "set_mode", "trainable_parameters"]
