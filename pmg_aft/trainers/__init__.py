"""One Config/Trainer pair per method on a shared base, and `TRAINERS`, the registry behind `--method`."""

from .base_config import RobustCLIPConfig
from .base_trainer import RobustCLIPTrainer, freeze_all_but_vision
from .clean_config import CleanFinetuneConfig
from .clean_trainer import CleanFinetuneTrainer
from .fare_config import FAREConfig
from .fare_trainer import FARETrainer
from .pmg_aft_config import PMGAFTConfig
from .pmg_aft_trainer import PMGAFTTrainer
from .tecoa_config import TeCoAConfig
from .tecoa_trainer import TeCoATrainer
from .tga_zsr_config import TGAZSRConfig
from .tga_zsr_trainer import TGAZSRTrainer

# `--method NAME` -> the trainer; its config class is `TRAINERS[name].config_class`.
TRAINERS: dict[str, type[RobustCLIPTrainer]] = {
    trainer.method_info.key: trainer
    for trainer in (PMGAFTTrainer, TeCoATrainer, FARETrainer, TGAZSRTrainer, CleanFinetuneTrainer)
}

__all__ = [
    "TRAINERS",
    "CleanFinetuneConfig",
    "CleanFinetuneTrainer",
    "FAREConfig",
    "FARETrainer",
    "PMGAFTConfig",
    "PMGAFTTrainer",
    "RobustCLIPConfig",
    "RobustCLIPTrainer",
    "TGAZSRConfig",
    "TGAZSRTrainer",
    "TeCoAConfig",
    "TeCoATrainer",
    "freeze_all_but_vision",
]
