"""Training: wires data, models, objectives and combiners into one Trainer and its epoch loop."""
from .build import build_model, build_trainer
from .config import Num, TrainConfig
from .loop import train
from .methods import METHODS, Method, build_method, register_method
from .trainer import Trainer

__all__ = ["METHODS", "Method", "Num", "TrainConfig", "Trainer", "build_method", "build_model", "build_trainer",
           "register_method", "train"]
