"""Fine-tuning a featurizer on labelled faces (``jobs.finetune``).

- ``settings``: :class:`FinetuneSettings`, the recipe and its defaults (no torch: ``--help`` reads it);
- ``image_folders``: list, check and split a ``<Class>/<image>`` folder by clip; class weights;
- ``sam``: :class:`SharpnessAware`, sharpness-aware minimisation around an inner optimiser;
- ``training``: :func:`finetune`, the head-then-full training loop keeping the best validation weights.

The folder a run writes, and how every job loads it, is ``featurizers.embedding.finetuned``.
"""

from featurizers.finetuning.settings import FinetuneSettings

__all__ = ["FinetuneSettings"]
