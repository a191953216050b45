"""Build `pmg_aft/data/benchmarks.json` (class names, templates and each protocol's texts) from the reference lists in
../shared/data.

Developer tool, run once when the lists change; the package never reads ../shared at run time. Sources and licences
are recorded in `pmg_aft/data/NOTICE`.

    python scripts/build_benchmark_data.py ../shared/data
"""

import json
import re
import sys
from pathlib import Path

from pmg_aft.data.generated import COLORS, GENERATED
from pmg_aft.data.loading import normalize_name

# Caltech101's folder names in sorted order (the order of torchvision and of the original archive); CLIP_benchmark's
# cleaned `caltech101` list gives the display names in the same order.
CALTECH101_FOLDERS = """BACKGROUND_Google Faces Faces_easy Leopards Motorbikes accordion airplanes anchor ant barrel
bass
beaver binocular bonsai brain brontosaurus buddha butterfly camera cannon car_side ceiling_fan cellphone chair
chandelier cougar_body cougar_face crab crayfish crocodile crocodile_head cup dalmatian dollar_bill dolphin dragonfly
electric_guitar elephant emu euphonium ewer ferry flamingo flamingo_head garfield gerenuk gramophone grand_piano
hawksbill headphone hedgehog helicopter ibis inline_skate joshua_tree kangaroo ketch lamp laptop llama lobster lotus
mandolin mayfly menorah metronome minaret nautilus octopus okapi pagoda panda pigeon pizza platypus pyramid revolver
rhino rooster saxophone schooner scissors scorpion sea_horse snoopy soccer_ball stapler starfish stegosaurus stop_sign
strawberry sunflower tick trilobite umbrella watch water_lilly wheelchair wild_cat windsor_chair wrench
yin_yang""".split()


def openai_classes(markdown: str, section: str) -> list[str]:
    block = markdown.split(f"## {section}\n", 1)[1].split("templates = [", 1)[0]
    return re.findall(r"^\s+'(.*)',$", block, flags=re.M) or re.findall(r'^\s+"(.*)",$', block, flags=re.M)


def tiny_imagenet_wnids(fusion: dict, table: dict[str, list[str]]) -> list[str]:
    """Tiny-ImageNet's wnids in the Hub dataset's label order, from the full names fusion_bench lists in that order."""
    wnids = []
    for full in fusion["tiny_imagenet"]["classnames_full"]:
        candidates = table[full.split(",")[0].strip().replace(" ", "_").lower()]
        # 'cardigan' and 'crane' name two ImageNet classes each; Tiny-ImageNet has the sweater and the machine.
        wnids.append({"cardigan": "n02963159", "crane": "n03126707"}.get(full, candidates[0]))
    return wnids


def normalise(name: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_\-/']", " ", name)).strip().lower()


def official_texts(official: dict, data: dict) -> None:
    """Add `pmg_aft`: the official PMG-AFT evaluation's class-name strings, verbatim, for each registry class in the
    registry's (the Hub dataset's) label order (`null` where the official evaluation has no such class), and its
    template. Each dataset is aligned by the evidence that fits it, and every alignment is checked."""
    by_position = ["cifar10", "cifar100", "stl10", "food101", "pets", "dtd", "flowers102", "eurosat",
                   "fgvc-aircraft", "stanford-cars", "pcam", "imagenet"]  # fmt: skip
    keys = {"pets": "oxford_pets", "fgvc-aircraft": "fgvc_aircraft", "stanford-cars": "stanford_cars",
            "tiny-imagenet": "tiny_imagenet"}  # fmt: skip
    for name, entry in data.items():
        facts = official[keys.get(name, name)]
        names = facts["class_names"]
        if name in by_position:
            assert len(names) == len(entry["names"]), name
            aligned = list(names)
        elif name == "sun397":  # the Hub orders 'jail cell' before 'jail indoor'; the official list the other way
            index = {normalise(n): n for n in names}
            aligned = [index[normalise(n)] for n in entry["names"]]
        elif name == "tiny-imagenet":  # official: sorted WordNet ids; the Hub: its own order, with the ids known
            by_wnid = dict(zip(sorted(entry["aliases"]), names))
            aligned = [by_wnid[w] for w in entry["aliases"]]
        elif name == "caltech101":  # cleaned as the crashing official loader meant to (`names_rule`); no background
            assert facts["folder_names_label_order"] == [f for f in entry["aliases"] if f != "BACKGROUND_Google"]
            aligned = [None if f == "BACKGROUND_Google" else normalize_name(f) for f in entry["aliases"]]
        elif name == "caltech256":  # the folder names cleaned as the official loader meant to (TeCoA's variant)
            aligned = [normalize_name(f) for f in entry["aliases"]]
            assert aligned == facts["tecoa_variant_class_names"]
        else:
            raise KeyError(name)
        entry["pmg_aft"] = {"names": aligned, "templates": facts["templates"]}
    # The positional alignments rest on these checks (the official renaming rules applied to the registry's names).
    for name in ("cifar10", "cifar100", "stl10", "food101", "pets", "dtd", "imagenet"):
        pairs = zip(data[name]["pmg_aft"]["names"], data[name]["names"])
        mismatched = [(a, b) for a, b in pairs if normalise(a) != normalise(b)]
        assert name == "imagenet" or not mismatched, (name, mismatched[:3])
    flowers = [(a, b) for a, b in zip(data["flowers102"]["pmg_aft"]["names"], data["flowers102"]["names"])
               if normalise(a) != normalise(b)]  # fmt: skip
    assert flowers == [("colts foot", "colt's foot")], flowers  # the official list drops the apostrophe
    for a, b in zip(data["fgvc-aircraft"]["pmg_aft"]["names"], data["fgvc-aircraft"]["names"]):
        assert a == ("boeing " if b.startswith("7") else "") + b.lower().replace("_", " "), (a, b)
    for a, b in zip(data["stanford-cars"]["pmg_aft"]["names"], data["stanford-cars"]["names"]):
        assert a == b[:-5].lower().replace("_", " ").replace("-", " "), (a, b)  # the year dropped, '/' kept
    eurosat = ["annual crop", "forest", "brushland", "highway", "industrial", "pasture", "permanent crop",
               "residential", "river", "lake"]  # fmt: skip
    assert all(k in a and k in b for k, a, b in zip(eurosat, data["eurosat"]["pmg_aft"]["names"],
                                                    data["eurosat"]["names"]))  # fmt: skip
    assert "healthy" in data["pcam"]["pmg_aft"]["names"][0] and "tumor" in data["pcam"]["pmg_aft"]["names"][1]
    imagenet = data["imagenet"]
    assert imagenet["aliases"] == sorted(imagenet["aliases"])  # both lists follow the sorted WordNet ids


def clip_benchmark_texts(bench: dict, data: dict) -> None:
    """Add `clip_benchmark`: CLIP_benchmark's own class-name strings where they are not the registry's names (which
    have underscores replaced and duplicates resolved), verbatim and in the registry's label order."""
    cifar100 = [("crab" if n == "cra" else n) for n in data["cifar100"]["aliases"]]  # torchvision's names
    assert sum("_" in n for n in cifar100) == 9, cifar100
    verbatim = {"cifar100": cifar100, "flowers102": bench["flowers"], "pets": bench["pets"],
                "caltech101": bench["caltech101"], "imagenet": bench["imagenet1k"]}  # fmt: skip
    for name, names in verbatim.items():
        assert len(names) == len(data[name]["names"]), name
        data[name]["clip_benchmark"] = {"names": list(names)}
    # CLIP_benchmark's ImageNet list says 'missile' and 'sunglasses' twice, as FARE's IMAGENET_CLASSNAMES does.
    imagenet = data["imagenet"]["clip_benchmark"]["names"]
    assert imagenet[657] == imagenet[744] == "missile" and imagenet[836] == imagenet[837] == "sunglasses"
    assert data["caltech101"]["clip_benchmark"]["names"][0] == "background"  # 102-way, as wds/vtab/caltech101


def tga_zsr_texts(data: dict) -> None:
    """Where TGA-ZSR at 5f2b31c differs from PMG-AFT: its Caltech101 class sets no prompt template, so
    `get_text_prompts_val` falls back to 'This is a photo of a {}' (utils.py); its Caltech-256 loader strips '-101'
    and runs, so it has only the cleaned names. Its names equal PMG-AFT's for both, and for Stanford Cars."""
    data["caltech101"]["tga_zsr"] = {"names": data["caltech101"]["pmg_aft"]["names"],
                                     "templates": ["This is a photo of a {}"]}  # fmt: skip
    data["caltech256"]["tga_zsr"] = {"names": data["caltech256"]["pmg_aft"]["names"],
                                     "templates": data["caltech256"]["pmg_aft"]["templates"]}  # fmt: skip


def main(shared: Path) -> None:
    official = json.loads((shared / "official_pmg_aft_eval.json").read_text())["datasets"]
    fusion = json.loads((shared / "fusion_bench_classnames.json").read_text())
    bench = json.loads((shared / "clip_benchmark_en_classnames.json").read_text())
    templates = json.loads((shared / "clip_benchmark_en_zeroshot_classification_templates.json").read_text())
    markdown = (shared / "openai_clip_prompts.md").read_text()
    table: dict[str, list[str]] = {}
    for line in (shared / "imagenet_wnid_names.txt").read_text().splitlines():
        if line.strip():
            wnid, _, name = line.split(maxsplit=2)
            table.setdefault(name.strip().lower(), []).append(wnid)

    cifar100 = [("crab" if n == "cra" else n) for n in fusion["cifar100"]["fine_label"]]  # a typo in the source
    data = {
        "cifar10": {"names": fusion["cifar10"]["classnames"], "templates": "cifar10"},
        # The Hub's own fine_label names (its `cra`, underscores) are the aliases the loader matches.
        "cifar100": {"names": cifar100, "aliases": fusion["cifar100"]["fine_label"], "templates": "cifar100"},
        "stl10": {"names": fusion["stl10"]["classnames"], "templates": "stl10"},
        "sun397": {"names": fusion["sun397"]["classnames"], "templates": "sun397"},
        "food101": {"names": fusion["food101"]["classnames"], "templates": "food101"},
        "pets": {"names": fusion["oxford_iiit_pet"]["classnames"], "templates": "pets"},
        "flowers102": {"names": fusion["flower102"]["classnames"], "templates": "flowers"},
        "dtd": {"names": fusion["dtd"]["classnames"], "templates": "dtd"},
        "eurosat": {"names": fusion["eurosat"]["classnames"], "templates": "eurosat"},
        "fgvc-aircraft": {"names": openai_classes(markdown, "FGVCAircraft"), "templates": "fgvc_aircraft"},
        "stanford-cars": {"names": fusion["stanford_cars"]["classnames"], "templates": "cars"},
        "caltech101": {"names": bench["caltech101"], "aliases": CALTECH101_FOLDERS, "templates": "caltech101"},
        # The 257 folder names of the Caltech-256 archive (official_pmg_aft_eval.json lists them in label order); the
        # Hub copy names each row in a `text` column, matched to these by name.
        "caltech256": {
            "names": [normalize_name(f) for f in official["caltech256"]["folder_names_label_order"]],
            "aliases": official["caltech256"]["folder_names_label_order"],
            "templates": "caltech101",
        },
        "pcam": {"names": bench["pcam"], "templates": "pcam"},
    }
    wnids = tiny_imagenet_wnids(fusion, table)
    by_wnid = {w: n for n, ws in table.items() for w in ws}
    names_by_wnid = {}
    for line in (shared / "imagenet_wnid_names.txt").read_text().splitlines():
        if line.strip():
            wnid, _, name = line.split(maxsplit=2)
            names_by_wnid[wnid] = name.strip()
    assert set(wnids) <= set(by_wnid)
    data["tiny-imagenet"] = {"names": [names_by_wnid[w] for w in wnids], "aliases": wnids, "templates": "imagenet1k"}
    imagenet = sorted(names_by_wnid)  # the Hub imagenet-1k label i is the i-th wnid in sorted order
    # OpenAI's curated ImageNet names (unique; the devkit's short names repeat 'crane' and 'maillot').
    imagenet_names = list(bench["imagenet1k"])
    for index in (744, 836):  # OpenAI's list says 'missile' and 'sunglasses' twice: use the devkit's names there
        imagenet_names[index] = names_by_wnid[imagenet[index]]
    data["imagenet"] = {"names": imagenet_names, "aliases": imagenet, "templates": "imagenet1k"}
    for entry in data.values():
        entry["templates"] = [t.replace("{c}", "{}") for t in templates[entry["templates"]]]
        entry["names"] = [re.sub(r"\s+", " ", n.replace("_", " ")).strip() for n in entry["names"]]
    official_texts(official, data)
    clip_benchmark_texts(bench, data)
    # The literal reading of the official Caltech-256 loader (`caltech256_names: literal`): 30 names keep ' 101'.
    literal = official["caltech256"]["class_names"]
    assert [n.removesuffix(" 101") for n in literal] == data["caltech256"]["pmg_aft"]["names"]
    assert sum(n.endswith(" 101") for n in literal) == 30
    data["caltech256"]["pmg_aft"]["literal_names"] = literal
    tga_zsr_texts(data)
    # The generated colour patches of the offline demo, a toy benchmark with both kinds of texts.
    colours = list(COLORS)
    data[GENERATED] = {"names": colours, "templates": ["a photo of a {} square.", "a {} square on a grey background."],
                       "pmg_aft": {"names": colours, "templates": ["This is a photo of a {}"]}}  # fmt: skip
    assert len(CALTECH101_FOLDERS) == len(bench["caltech101"]) == 102
    out = Path(__file__).resolve().parent.parent / "pmg_aft" / "data" / "benchmarks.json"
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}: " + ", ".join(f"{k} {len(v['names'])}" for k, v in data.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
