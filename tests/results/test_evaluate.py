"""``dat-lab evaluate`` and ``dat-lab visualize`` on checkpoint files.

The metrics are checked against top-1 and loss computed here independently: the images read
with PIL and prepared with torchvision's own transforms (resize the short side to
floor(64 / 0.875), bicubic, centre crop 64, ImageNet normalisation).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from official_layout import official_state_dict
from PIL import Image
from torchvision import transforms as T

from dat_lab.cli import main
from dat_lab.experiments.weights import read_weights
from dat_lab.models import Sampling, build_model, get_preset
from dat_lab.schema import ConfigError

CLASSES = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    for split, n in (("train", 1), ("val", 5)):
        for c, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                h, w = int(rng.integers(70, 110)), int(rng.integers(70, 110))
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                pixels[..., c] //= 3  # a colour cast per class
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(get_preset("dat_micro").replace(num_classes=len(CLASSES)))
    with torch.no_grad():
        model.head.weight.mul_(20)  # spread the predictions over the classes
    path = tmp_path_factory.mktemp("ckpt") / "micro.pth"
    torch.save(model.state_dict(), path)
    return path, model.eval()


def independent_metrics(model, folder) -> tuple[float, float, list[int]]:
    prep = T.Compose(
        [
            T.Resize(math.floor(64 / 0.875), interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(64),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    images, labels = [], []
    for c, name in enumerate(CLASSES):
        for file in sorted((folder / "val" / name).iterdir()):
            images.append(prep(Image.open(file).convert("RGB")))
            labels.append(c)
    with torch.no_grad():
        logits = model(torch.stack(images))
    y = torch.tensor(labels)
    preds = logits.argmax(-1)
    return int((preds == y).sum()) / len(y), float(F.cross_entropy(logits, y)), preds.tolist()


def test_evaluate_agrees_with_top1_computed_independently(folder, checkpoint, tmp_path, capsys):
    path, model = checkpoint
    out = tmp_path / "eval.json"
    args = [
        "evaluate", str(path), "model=dat_micro", "data.name=imagefolder",
        f"data.path={folder}", "data.batch_size=4", "--device", "cpu", "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    result = json.loads(out.read_text())
    top1, loss, preds = independent_metrics(model, folder)
    assert len(set(preds)) > 1  # the check is not about a constant prediction
    assert result["images"] == 15
    assert result["top1"] == pytest.approx(top1, abs=1e-9)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["top5"] == 1.0  # three classes: every label is in the top 3
    row = capsys.readouterr().out
    assert f"top-1 {100 * top1:.2f}" in row and "images/s on cpu" in row


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "/nonexistent/w.pth"], "no such checkpoint file '/nonexistent/w.pth'"),
        (["evaluate", "abc123"], "no run 'abc123' in"),
        (
            ["evaluate", "{ckpt}", "model=dat_nano", "data.name=digits"],
            "'stem.proj.weight' has shape (16, 3, 4, 4)",
        ),
        (["evaluate", "{ckpt}"], "add model=PRESET"),
        (["evaluate", "{ckpt}", "model=dat_micro"], "add data.name=imagefolder"),
        (["evaluate", "{ckpt}", "model=dat_micro", "batch=3"], "batch: unknown key"),
    ],
)
def test_bad_input_gets_one_clear_error(argv, message, checkpoint, tmp_path, capsys):
    argv = [a.format(ckpt=checkpoint[0]) for a in argv] + ["--store", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1


@pytest.mark.parametrize(
    "preset, sampling",
    [("dat_small", Sampling.OFFICIAL), ("dat_pp_small", Sampling.OFFICIAL_PP)],
)
def test_official_checkpoint_names_its_architecture_and_convention(preset, sampling, tmp_path):
    path = tmp_path / "official.pth"
    torch.save({"model": official_state_dict(preset, std=0), "epoch": 299}, path)
    weights = read_weights(path)
    assert weights.kind == "official"
    assert weights.model == get_preset(preset).replace(sampling=sampling)


def test_official_checkpoint_fine_tuned_to_another_class_count_keeps_its_head(tmp_path):
    state = official_state_dict("dat_tiny", std=0)
    state["cls_head.weight"], state["cls_head.bias"] = torch.zeros(10, 768), torch.zeros(10)
    torch.save({"model": state}, tmp_path / "ten.pth")
    weights = read_weights(tmp_path / "ten.pth")
    expected = get_preset("dat_tiny").replace(sampling=Sampling.OFFICIAL, num_classes=10)
    assert weights.model == expected


# One key of the official dat_tiny checkpoint removed or given another shape.
BROKEN_OFFICIAL = {
    "removed": (
        lambda s: s.pop("stages.2.attns.1.rpe_table"),
        "'stages.2.attns.1.rpe_table' is missing (official shape (12, 27, 27))",
    ),
    "reshaped": (
        lambda s: s.__setitem__("stages.1.attns.0.proj_qkv.weight", torch.zeros(576, 190)),
        "'stages.1.attns.0.proj_qkv.weight' has shape (576, 190), officially (576, 192)",
    ),
    "added": (
        lambda s: s.__setitem__("stages.2.attns.1.extra", torch.zeros(3)),
        "'stages.2.attns.1.extra' is unexpected",
    ),
}


def _broken_official(case: str, path):
    corrupt, difference = BROKEN_OFFICIAL[case]
    state = official_state_dict("dat_tiny", std=0)
    corrupt(state)
    torch.save({"model": state}, path)
    return difference


@pytest.mark.parametrize("case", BROKEN_OFFICIAL)
def test_an_official_checkpoint_with_a_broken_key_is_refused_naming_the_key(case, tmp_path):
    path = tmp_path / "dat_tiny.pth"
    difference = _broken_official(case, path)
    with pytest.raises(ConfigError) as err:
        read_weights(path, key="CHECKPOINT_OR_RUN_ID")
    message = str(err.value)
    assert message.startswith(f"CHECKPOINT_OR_RUN_ID: {str(path)!r} is in the official layout")
    assert "closest listed official checkpoint, dat_tiny's" in message
    assert message.endswith(f"differs in 1 key(s): {difference}")


def test_evaluate_on_an_official_checkpoint_with_a_foreign_key_exits_2_naming_it(tmp_path, capsys):
    path = tmp_path / "dat_tiny.pth"
    difference = _broken_official("added", path)
    assert main(["evaluate", str(path), "--store", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert difference in err and err.count("error:") == 1


def test_visualize_accepts_a_checkpoint_file(folder, checkpoint, tmp_path, capsys):
    out = tmp_path / "micro.png"
    image = folder / "val" / "bee" / "0.png"
    argv = ["visualize", str(checkpoint[0]), "--model", "dat_micro", "--image", str(image)]
    assert main(argv + ["--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert "2 deformable block(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluating_a_run_reproduces_its_final_validation(tmp_path, capsys):
    from results_helpers import EXPERIMENTS

    from dat_lab.experiments.runner import run_spec
    from dat_lab.experiments.spec import load_experiment
    from dat_lab.experiments.store import RunStore

    overrides = {
        "train.epochs": 1, "train.val_every_n_epochs": 1, "train.threads": 1,
        "data.train_size": 64, "data.val_size": 32,
        "data.batch_size": 32, "data.cache_dir": str(tmp_path / "cache"),
    }  # fmt: skip
    _, specs = load_experiment(EXPERIMENTS / "offset_range.yaml", overrides)
    spec = next(s for s in specs if s.seed == 0)
    store = RunStore(tmp_path / "store")
    assert run_spec(spec, store, log=lambda m: None).result == "finished"
    final = store.read_json(spec.run_id, "final")
    out = tmp_path / "run.json"
    argv = ["evaluate", spec.run_id[:8], "--store", str(store.root), "--out", str(out)]
    assert main(argv + ["--device", "cpu", "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "lightning" and result["images"] == 32
    assert result["top1"] == pytest.approx(final["val/acc1"], abs=1e-6)
    assert result["loss"] == pytest.approx(final["val/loss"], rel=1e-4)
