"""Training: TrainConfig, the LightningModule, optimiser/schedule, callbacks and the Trainer.

Import from the submodules (``dat_lab.train.config``, ``.module``, ``.trainer``, ...).
"""
