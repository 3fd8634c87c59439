"""crysfuse: crystal graph + text fusion for property prediction.

Nothing heavy is imported here: submodules are imported on demand, so ``import crysfuse`` is cheap.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
