"""One Config/Trainer pair per method on a shared base, and `TRAINERS`, the registry behind `--method`.

A new method is a `*_config.py` + `*_trainer.py` pair and one entry in `METHODS` below (or `register_method` of a
trainer defined elsewhere): `--method`, the job's help, the hints for unknown flags, the model cards of its
checkpoints and the public API all read the registry.
"""

from .agft_config import AGFTConfig as AGFTConfig  # re-exported
from .agft_trainer import AGFTTrainer
from .base_config import RobustCLIPConfig
from .base_trainer import RobustCLIPTrainer
from .clean_config import CleanFinetuneConfig as CleanFinetuneConfig  # re-exported
from .clean_trainer import CleanFinetuneTrainer
from .comp_tga_config import CompTGAConfig as CompTGAConfig  # re-exported
from .comp_tga_trainer import CompTGATrainer
from .fare_config import FAREConfig as FAREConfig  # re-exported
from .fare_trainer import FARETrainer
from .models import freeze_all_but_vision
from .pmg_aft_config import PMGAFTConfig as PMGAFTConfig  # re-exported
from .pmg_aft_trainer import PMGAFTTrainer
from .tecoa_config import TeCoAConfig as TeCoAConfig  # re-exported
from .tecoa_trainer import TeCoATrainer
from .tga_zsr_config import TGAZSRConfig as TGAZSRConfig  # re-exported
from .tga_zsr_trainer import TGAZSRTrainer

# `--method NAME` -> the trainer; its config class is `TRAINERS[name].config_class`.
TRAINERS: dict[str, type[RobustCLIPTrainer]] = {}


def register_method(trainer: type[RobustCLIPTrainer]) -> type[RobustCLIPTrainer]:
    """Add a method's trainer to [`TRAINERS`] under its `method_info.key` (usable as a class decorator).

    Raises:
        `TypeError`: for a class that is not a method's trainer (a [`RobustCLIPTrainer`] with a `method_info` and its
            own [`RobustCLIPConfig`] subclass), or a key another trainer already has.
    """
    info = getattr(trainer, "method_info", None)
    if not (isinstance(trainer, type) and issubclass(trainer, RobustCLIPTrainer) and info is not None):
        raise TypeError(f"{trainer!r} is not a method's trainer: subclass RobustCLIPTrainer and set method_info.")
    if not issubclass(trainer.config_class, RobustCLIPConfig) or trainer.config_class is RobustCLIPConfig:
        raise TypeError(f"{trainer.__name__}.config_class must be the method's own RobustCLIPConfig subclass.")
    if TRAINERS.get(info.key, trainer) is not trainer:
        raise TypeError(f"The method {info.key!r} is {TRAINERS[info.key].__name__}'s; pick another method_info.key.")
    TRAINERS[info.key] = trainer
    return trainer


METHODS = (PMGAFTTrainer, TeCoATrainer, FARETrainer, TGAZSRTrainer, CleanFinetuneTrainer, AGFTTrainer, CompTGATrainer)
for _trainer in METHODS:
    register_method(_trainer)

__all__ = ["TRAINERS", "RobustCLIPConfig", "RobustCLIPTrainer", "freeze_all_but_vision", "register_method"]
__all__ += [cls.__name__ for trainer in METHODS for cls in (trainer.config_class, trainer)]
