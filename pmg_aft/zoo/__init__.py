"""The zoo of published robust CLIP checkpoints: their records, one reader per release format, the import to a plain
`CLIPModel` (checked against the source architecture) and the export back to open_clip."""

from ..provenance import PROVENANCE_FILE
from .export import export_open_clip
from .formats import FORMATS, READERS, Source, read_checkpoint
from .importing import import_checkpoint, read_provenance
from .registry import ReportedFigure, ZooEntry, get_zoo_entry, zoo_entries, zoo_table

__all__ = [
    "FORMATS",
    "PROVENANCE_FILE",
    "READERS",
    "ReportedFigure",
    "Source",
    "ZooEntry",
    "export_open_clip",
    "get_zoo_entry",
    "import_checkpoint",
    "read_checkpoint",
    "read_provenance",
    "zoo_entries",
    "zoo_table",
]
