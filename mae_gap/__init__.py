"""mae-gap: the science core. Config, data, MAE model, signed-alpha losses, Lightning module.

Imports nothing heavy at package import time, and never wandb.
"""

__version__ = "0.1.0"
