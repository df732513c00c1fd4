"""robustfront: adversarial training that pushes the accuracy-robustness front outward."""
__version__ = "0.1.0"


def load_model(checkpoint, device="cpu", *, base=None):
    """Rebuild a model from a robustfront checkpoint (path or loaded dict), in eval mode; `base`: the
    base weights file of a fine-tuning delta checkpoint, where it has moved."""
    from .models import load_model as _load
    return _load(checkpoint, device=device, base=base)
