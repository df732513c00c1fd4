"""Training: wires data, models, objectives and combiners."""
from .config import TrainConfig, parse_number
from .loop import train
from .methods import METHODS, Method, register_method

__all__ = ["METHODS", "Method", "TrainConfig", "parse_number", "register_method", "train"]
