"""What a trainer declares about its method, for model cards and Hub commits: its name, description, paper, tags."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Paper:
    """A method's paper, as its model card cites it."""

    title: str
    authors: str
    venue: str
    arxiv_id: str
    bibtex: str

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv_id}"

    @property
    def short(self) -> str:
        """`Wang et al., CVPR 2024`."""
        first = self.authors.split(",")[0].split(" and ")[0].strip().split()[-1]
        return f"{first} et al., {self.venue}"


@dataclass(frozen=True)
class MethodInfo:
    """What a trainer declares about its method for cards and Hub commits.

    Args:
        key (`str`): the `--method` name (`pmg_aft`, `tecoa`, ...).
        name (`str`): the display name (`PMG-AFT`).
        description (`str`): what training did, completing "fine-tuned ... with {name}, ...".
        paper (`Paper`, *optional*): the method's paper; `None` for plain fine-tuning.
        tags (`tuple[str, ...]`): Hub tags beside the base ones.
        recipes (`tuple[str, ...]`): the method's published recipes, as example configs
            (`examples/configs/{recipe}.yaml`); tests and docs list them from here.
        extends (`str`, *optional*): the method whose config/trainer pair this one extends (a published extension,
            such as Comp-TGA of TGA-ZSR); a method's files import no other method's otherwise.
    """

    key: str
    name: str
    description: str
    paper: Paper | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    recipes: tuple[str, ...] = field(default_factory=tuple)
    extends: str | None = None

    @property
    def commit_message(self) -> str:
        return f"{self.name} fine-tuned CLIP (pmg_aft)"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> MethodInfo:
        paper = values.get("paper")
        return cls(**{**values, "paper": Paper(**paper) if paper else None, "tags": tuple(values.get("tags", ())),
                      "recipes": tuple(values.get("recipes", ()))})  # fmt: skip
