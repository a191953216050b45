"""Build `pmg_aft/data/benchmarks.json` (class names and templates) from the reference lists in ../shared/data.

Developer tool, run once when the lists change; the package never reads ../shared at run time. Sources and licences
are recorded in `pmg_aft/data/NOTICE`.

    python scripts/build_benchmark_data.py ../shared/data
"""

import json
import re
import sys
from pathlib import Path

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


def main(shared: Path) -> None:
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
        "cifar100": {"names": cifar100, "templates": "cifar100"},
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
        "caltech256": {"names": [], "templates": "caltech101"},
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
    assert len(CALTECH101_FOLDERS) == len(bench["caltech101"]) == 102
    out = Path(__file__).resolve().parent.parent / "pmg_aft" / "data" / "benchmarks.json"
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}: " + ", ".join(f"{k} {len(v['names'])}" for k, v in data.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
