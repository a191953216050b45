"""A new method is one Config/Trainer pair and one registry entry: defined here, registered, trained through the job
with `--method`, named in its help, its hints and its checkpoint's card."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from pmg_aft import TRAINERS, RobustCLIPConfig, RobustCLIPTrainer
from pmg_aft.cli import main as cli
from pmg_aft.cli import usage
from pmg_aft.finetune import main, parse_args
from pmg_aft.methods import MethodInfo
from pmg_aft.trainers import register_method

CONFIG = os.path.join(os.path.dirname(__file__), "..", "examples", "configs", "tiny_offline.yaml")


@dataclass
class WeightedCEConfig(RobustCLIPConfig):
    """Cross-entropy on PGD images, times a weight: a method of this test only."""

    weight: float = field(default=1.0, metadata={"help": "Weight of the cross-entropy."})


class WeightedCETrainer(RobustCLIPTrainer):
    config_class = WeightedCEConfig
    method_info = MethodInfo(key="weighted_ce", name="weighted CE", description="cross-entropy on PGD images.",
                             tags=("adversarial-training",))  # fmt: skip

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        images, labels = inputs["pixel_values"], inputs["labels"]
        target = self.classifier()
        with self.accelerator.autocast():
            adv = self.attack(target, images, labels)
            logits = target.logits_from_embeddings(self.image_embeddings(model, target.preprocess(adv)))
        loss = self.args.weight * F.cross_entropy(logits, labels)
        self.log_metric("weighted_ce", loss)
        return loss


@pytest.fixture
def registered():
    assert register_method(WeightedCETrainer) is WeightedCETrainer
    yield WeightedCETrainer
    del TRAINERS["weighted_ce"]  # the other tests see the registered methods only


def test_a_method_defined_here_trains_through_the_job(registered, checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    before = load_file(os.path.join(checkpoint, "model.safetensors"))
    main(["--config", CONFIG, "--method", "weighted_ce", "--weight", "2", "--model_name_or_path", checkpoint,
          "--output_dir", str(out), "--max_steps", "2", "--eval_attack_steps", "1", "--save_strategy", "no",
          "--logging_steps", "1", "--disable_tqdm", "true"])  # fmt: skip
    assert "weighted CE: zero-shot accuracy" in capsys.readouterr().out
    after = load_file(str(out / "model.safetensors"))
    assert not torch.equal(after["visual_projection.weight"], before["visual_projection.weight"])  # it trained
    assert torch.equal(after["text_projection.weight"], before["text_projection.weight"])  # the text side did not
    info = json.loads((out / "pmg_aft.json").read_text())
    assert info["method"]["key"] == "weighted_ce" and info["recipe"]["weight"] == 2.0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert any("weighted_ce" in entry for entry in history)  # its own logged term
    # The checkpoint's card, as `pmg-aft push` would publish it, names the method.
    assert cli(["eval", "--model_name_or_path", str(out), "--benchmarks", "colour-patches", "--steps", "1",
                "--max_eval_samples", "8", "--output_dir", str(tmp_path / "eval")]) == 0  # fmt: skip
    assert "fine-tuned with weighted CE" in ModelCard.load(str(tmp_path / "eval" / "README.md")).text


def test_every_list_of_methods_comes_from_the_registry(registered, capsys):
    _, _, config = parse_args(["--method", "weighted_ce", "--weight", "3", "--output_dir", "x"])
    assert type(config) is WeightedCEConfig and config.weight == 3.0
    assert "weighted_ce" in usage()
    with pytest.raises(SystemExit, match=r"weight is a field of weighted_ce, not of this method"):
        parse_args(["--method", "tecoa", "--weight", "3", "--output_dir", "x"])
    with pytest.raises(SystemExit):
        parse_args(["--method", "weighted_ce", "--help"])
    listed = " ".join(capsys.readouterr().out.split())
    assert f"One of: {', '.join(TRAINERS)}." in listed and "weighted_ce." in listed


def test_register_method_refuses_what_is_not_a_method():
    with pytest.raises(TypeError, match="not a method's trainer"):
        register_method(RobustCLIPTrainer)  # the shared base has no method_info

    class NoConfig(RobustCLIPTrainer):
        method_info = MethodInfo(key="no_config", name="no config", description="none.")

    with pytest.raises(TypeError, match="own RobustCLIPConfig subclass"):
        register_method(NoConfig)

    class Impostor(WeightedCETrainer):
        method_info = MethodInfo(key="pmg_aft", name="not PMG-AFT", description="none.")

    with pytest.raises(TypeError, match="The method 'pmg_aft' is PMGAFTTrainer's"):
        register_method(Impostor)
    assert "no_config" not in TRAINERS and TRAINERS["pmg_aft"].__name__ == "PMGAFTTrainer"


PACKAGE = {
    "__init__.py": '''"""A method in a package of its own: its config, its trainer, one registry line."""
from pmg_aft.trainers import register_method

from .foo_trainer import FooTrainer

register_method(FooTrainer)
''',
    "foo_config.py": '''from dataclasses import dataclass, field

from pmg_aft import RobustCLIPConfig
from pmg_aft.domains import POSITIVE
from pmg_aft.domains import field as domain_field


@dataclass
class FooConfig(RobustCLIPConfig):
    """Cross-entropy on PGD images, scaled: the method of a temporary package."""

    scale: float = domain_field(default=1.0, domain=POSITIVE, metadata={"help": "Scale of the cross-entropy."})
''',
    "foo_trainer.py": """import torch.nn.functional as F

from pmg_aft import RobustCLIPTrainer
from pmg_aft.methods import MethodInfo

from .foo_config import FooConfig


class FooTrainer(RobustCLIPTrainer):
    config_class = FooConfig
    method_info = MethodInfo(key="foo", name="Foo", description="scaled cross-entropy on PGD images.",
                             tags=("adversarial-training",))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        images, labels = inputs["pixel_values"], inputs["labels"]
        target = self.classifier()
        with self.accelerator.autocast():
            adv = self.attack(target, images, labels)
            logits = target.logits_from_embeddings(self.image_embeddings(model, target.preprocess(adv)))
        return self.args.scale * F.cross_entropy(logits, labels)
""",
    "plugin.py": "import foo_method  # noqa: F401  (registers the method before the tests are collected)\n",
}


@pytest.mark.slow
def test_a_method_in_its_own_package_is_covered_by_the_cli_the_docs_and_the_shared_tests(tmp_path):
    import subprocess
    import sys

    package = tmp_path / "foo_method"
    package.mkdir()
    for name, text in PACKAGE.items():
        (package / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    probe = (
        "import foo_method, io, contextlib\n"
        "from pmg_aft.cli import main, usage\n"
        "from pmg_aft.reference import methods_page, cli_page, pages\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    assert main(['train', '--method', 'foo', '--help']) == 0\n"
        "print('USAGE', 'foo' in usage())\n"
        "print('HELP', '--scale' in out.getvalue() and 'Domain: a finite number > 0' in out.getvalue())\n"
        "page = pages()['reference/methods/foo.md']()\n"
        "print('DOCS', '| Foo |' in methods_page() and '`scale`' in page and 'foo' in cli_page())\n"
    )
    said = subprocess.run([sys.executable, "-c", probe], env=env, cwd=root, capture_output=True, text=True)
    assert said.returncode == 0, said.stderr[-2000:]
    assert {"USAGE True", "HELP True", "DOCS True"} <= set(said.stdout.splitlines()), said.stdout
    # The shared tests are parametrised by the registry: with the package registered they collect the new method...
    collect = subprocess.run([sys.executable, "-m", "pytest", "-p", "foo_method.plugin", "--collect-only", "-q",
                              "-p", "no:cacheprovider", "tests/test_base_trainer.py", "tests/test_finetune.py",
                              "tests/test_hub.py"], env=env, cwd=root, capture_output=True, text=True)  # fmt: skip
    assert collect.returncode == 0, collect.stdout[-2000:]
    ids = [line for line in collect.stdout.splitlines() if "[foo]" in line]
    assert any("test_base_trainer.py" in i for i in ids) and any("test_hub.py" in i for i in ids), ids
    # ...and one of them passes on it: every vision parameter trains, the text side and the reference do not.
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "foo_method.plugin", "-q", "-p", "no:cacheprovider",
                          "tests/test_base_trainer.py::test_a_step_trains_every_vision_parameter_and_nothing_else[foo]"],
                         env=env, cwd=root, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-2000:]


def test_an_attack_and_a_protocol_registered_outside_are_used_everywhere(tmp_path):
    import dataclasses

    from pmg_aft.attack_settings import AttackGrid
    from pmg_aft.attack_specs import ATTACKS, AttackSpec, register_attack
    from pmg_aft.evaluation import PROTOCOL_RECORDS, get_protocol
    from pmg_aft.evaluation.protocols import register_protocol
    from pmg_aft.reference import attacks_page, protocols_page

    spec = AttackSpec("pgd-again", "PGD again", "The PGD loop under another name.", ATTACKS["pgd"].run, loss="ce")
    protocol = dataclasses.replace(get_protocol("pmg_aft"), name="pmg_aft_again")
    try:
        assert register_attack(spec) is spec and register_protocol(protocol) is protocol
        grid = AttackGrid(attacks="pgd-again", steps=(2,))
        assert [s.key for s in grid.settings()] == [
            "pgd-again-2-rs-last@1/255"
        ]  # steps: the spec says it is a PGD loop
        assert "PGD again-2" in grid.settings()[0].describe() and "`pgd-again`" in attacks_page()
        assert get_protocol("pmg_aft_again") is protocol and "## `pmg_aft_again`" in protocols_page()
        from pmg_aft.cli import SuiteArguments

        suite = SuiteArguments(output_dir=str(tmp_path), protocol="pmg_aft_again", steps="1")  # --protocol takes it
        assert suite.effective_protocol.name == "pmg_aft_again" and suite.effective_protocol.overridden == ("steps",)
        with pytest.raises(TypeError, match="already registered"):
            register_attack(AttackSpec("pgd", "P", "d", spec.run, loss="ce"))
        with pytest.raises(TypeError, match="already registered"):
            register_protocol(dataclasses.replace(protocol))
        with pytest.raises(TypeError, match="is not a Protocol"):
            register_protocol("pmg_aft")
    finally:
        ATTACKS.pop("pgd-again", None)
        PROTOCOL_RECORDS.pop("pmg_aft_again", None)
    with pytest.raises(ValueError, match="attacks must be one of pgd, cw, autoattack"):
        AttackGrid(attacks="pgd-again")  # gone with its registration
