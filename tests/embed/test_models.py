"""The embedded default model: real weights, timm's preprocessing, engines, cache, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from bannermatch.embed.models import Preprocess, create_model, get_spec
from bannermatch.embed.models.network import load_state_in_order
from bannermatch.errors import BannermatchError, ModelError
from bannermatch.images import load_image
from support.cli import assert_pillow_close


@pytest.fixture(scope="module")
def network() -> nn.Module:
    """The timm classifier with the real weights, as the factory builds it."""
    return create_model("effnet-lite0", engine="torch").network().image


@pytest.fixture(scope="module")
def timm_transform(network: nn.Module):
    from timm.data import create_transform, resolve_data_config

    return create_transform(**resolve_data_config({}, model=network))


@pytest.fixture(scope="module")
def real_images(skimage_dir: Path, covers_dir: Path, igdb_dir: Path) -> dict[str, Image.Image]:
    """Real pictures of several aspect ratios: 3:2, 1:1, landscape, 2:3 covers, 2:3 at 512."""
    paths = {
        "coffee": skimage_dir / "coffee.png",  # 600x400
        "astronaut": skimage_dir / "astronaut.png",  # 512x512
        "chelsea": skimage_dir / "chelsea.png",  # 451x300
        "rocket": skimage_dir / "rocket.jpg",  # 640x427
        "cover": sorted((covers_dir / "images").glob("*.jpg"))[0],  # 342x482
        "igdb": sorted((igdb_dir / "images").glob("*.jpg"))[0],  # 512x768
    }
    images = {name: load_image(str(p)).image for name, p in paths.items()}
    # already at the resize size on its short side: the resize step is skipped
    images["short256"] = images["igdb"].crop((0, 0, 256, 400))
    # smaller than the crop: upscaled
    images["tiny"] = images["cover"].resize((90, 127))
    return images


def test_real_weights_classify_espresso(
    network: nn.Module, timm_transform, skimage_dir: Path
) -> None:
    from timm.data import ImageNetInfo

    im = Image.open(skimage_dir / "coffee.png").convert("RGB")
    with torch.inference_mode():
        probs = network(timm_transform(im).unsqueeze(0)).softmax(-1)[0]
    info = ImageNetInfo()
    top = int(probs.argmax())
    assert info.index_to_description(top) == "espresso"
    assert float(probs[top]) > 0.5


def test_load_state_in_order_names_the_mismatched_shape() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Linear(8, 4))
    state = {f"other.{k}": v.clone() for k, v in model.state_dict().items()}
    load_state_in_order(model, state, "tiny")  # other names, same order and shapes: loads

    bad = dict(state)
    bad["other.2.weight"] = torch.zeros(4, 9)
    with pytest.raises(ModelError, match=r"tiny: shape mismatch at 2\.weight \(4, 8\)") as info:
        load_state_in_order(model, bad, "tiny")
    assert "(4, 9)" in str(info.value)

    short = dict(list(state.items())[:-1])
    with pytest.raises(ModelError, match="tiny: the checkpoint has"):
        load_state_in_order(model, short, "tiny")


def test_real_checkpoint_into_another_architecture_fails_loudly() -> None:
    import timm

    spec = get_spec("effnet-lite0")
    state = torch.load(spec.weights_file(), map_location="cpu", weights_only=True)
    other = timm.create_model("tf_efficientnet_lite1", pretrained=False)
    with pytest.raises(ModelError, match="effnet-lite0: "):
        load_state_in_order(other, state, "effnet-lite0")


@pytest.fixture(scope="module")
def crop_model():  # type: ignore[no-untyped-def]
    """The embedded model with timm's own eval transform (``--fit crop``)."""
    return create_model("effnet-lite0", fit="crop", device="cpu")


def test_crop_preprocess_equals_timm_eval_transform(
    crop_model, timm_transform, real_images: dict[str, Image.Image]
) -> None:
    assert crop_model.preprocess.fit == "crop"
    for name, im in real_images.items():
        ours = crop_model.preprocess(im)
        theirs = timm_transform(im).numpy()
        assert ours.shape == theirs.shape == (3, 224, 224), name
        assert ours.dtype == np.float32
        assert_pillow_close(ours, theirs, level=1 / (255 * 0.5), msg=name)  # mean, std 0.5


def test_squash_and_pad(model, real_images: dict[str, Image.Image]) -> None:
    base = model.preprocess
    squash = Preprocess(**{**base.to_dict(), "fit": "squash"})
    pad = Preprocess(**{**base.to_dict(), "fit": "pad"})
    cover = real_images["cover"]  # 342x482: 2:3 portrait
    assert squash(cover).shape == pad(cover).shape == (3, 224, 224)
    assert squash.resize(cover).size == pad.resize(cover).size == (224, 224)

    padded = pad(cover)
    inner_w = round(342 * 224 / 482)  # 159
    left = (224 - inner_w) // 2
    assert (padded[:, :, :left] == 0).all() and (padded[:, :, left + inner_w :] == 0).all()
    inner = padded[:, :, left : left + inner_w]
    assert (np.abs(inner).sum(axis=0) > 0).mean() > 0.95  # the whole cover is in there
    # the content is the cover resized, normalised like the crop
    resized = cover.resize((inner_w, 224), Image.Resampling.BICUBIC)
    assert_pillow_close(inner, base.to_array(resized), level=1 / (255 * 0.5))
    # squash keeps the full height and width of the cover: differs from the crop
    assert not np.allclose(squash(cover), base(cover), atol=0.1)
    # a landscape photo pads top and bottom
    photo = pad(real_images["coffee"])
    assert (photo[:, :37] == 0).all() and (photo[:, -37:] == 0).all()
    assert (np.abs(photo[:, 112]).sum(axis=0) > 0).all()


def test_very_long_images_skip_the_huge_resize(
    crop_model, real_images: dict[str, Image.Image]
) -> None:
    """A strip is cropped from a resize of only the part kept: the pixels of resizing it
    whole (torchvision's Resize + CenterCrop) but for rounding, without a gigabyte copy."""
    pre = crop_model.preprocess
    cover = real_images["cover"]
    for size in [(1600, 200), (150, 1500), (2000, 120)]:
        im = cover.resize(size, Image.Resampling.BILINEAR)
        w, h = size
        short, long = min(w, h), max(w, h)
        new = (pre.resize_size, int(pre.resize_size * long / short))
        nw, nh = new if w <= h else new[::-1]
        full = im.resize((nw, nh), Image.Resampling.BICUBIC)
        top, left = round((nh - pre.crop_size) / 2), round((nw - pre.crop_size) / 2)
        want = full.crop((left, top, left + pre.crop_size, top + pre.crop_size))
        diff = np.abs(np.asarray(pre.resize(im), np.int16) - np.asarray(want, np.int16))
        assert diff.max() <= 2 and diff.mean() < 0.1, size  # filter weights' rounding
    started = time.perf_counter()
    strip = pre(cover.resize((64_000, 1)))  # would resize to 16,384,000 x 256 (12 GB)
    assert strip.shape == (3, 224, 224) and time.perf_counter() - started < 2


def test_preprocess_options_and_keys() -> None:
    pre = create_model("effnet-lite0", engine="torch", fit="pad", crop_size=160).preprocess
    assert (pre.crop_size, pre.fit, pre.key) == (160, "pad", "pad160-bicubic")
    crop = create_model("effnet-lite0", engine="torch", crop_size=192).preprocess
    assert (crop.resize_size, crop.crop_size) == (219, 192)  # crop_pct kept
    with pytest.raises(BannermatchError, match="unknown fit 'stretch'"):
        create_model("effnet-lite0", fit="stretch")
    with pytest.raises(BannermatchError, match="--resize-size must not be smaller"):
        create_model("effnet-lite0", resize_size=200, crop_size=224)
    with pytest.raises(BannermatchError, match="unknown interpolation"):
        create_model("effnet-lite0", interpolation="cubic-ish")


def test_keep_ratio_off_squashes_before_the_crop(
    model, real_images: dict[str, Image.Image]
) -> None:
    from torchvision import transforms

    assert model.key == "effnet-lite0__pad224-bicubic__cls"  # the chosen default
    assert model.preprocess.keep_ratio and model.manifest()["preprocess"]["keep_ratio"]
    square = create_model("effnet-lite0", engine="torch", keep_ratio=False)
    assert square.key == "effnet-lite0__crop256x256-224-bicubic__cls"
    # the original feature extractor's transform with --keep_ratio off
    theirs = transforms.Compose(
        [
            transforms.Resize((256, 256), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        ]
    )
    cover = real_images["cover"]
    assert_pillow_close(square.preprocess(cover), theirs(cover).numpy(), level=1 / (255 * 0.5))
    assert not np.allclose(square.preprocess(cover), model.preprocess(cover), atol=0.1)
    # the key and the manifest carry it; a query rebuilds the same model from the manifest
    from bannermatch.embed.models.factory import create_model_for

    assert create_model_for(square.manifest(), engine="torch").key == square.key
    # pad and squash imply it: the same key either way, and a contradiction is an error
    pad = create_model("effnet-lite0", engine="torch", fit="pad", keep_ratio=True)
    assert pad.key == "effnet-lite0__pad224-bicubic__cls" and pad.preprocess.keep_ratio
    squash = create_model("effnet-lite0", engine="torch", fit="squash")
    assert not squash.preprocess.keep_ratio
    with pytest.raises(BannermatchError, match="--no-keep-ratio contradicts --fit pad"):
        create_model("effnet-lite0", fit="pad", keep_ratio=False)
    with pytest.raises(BannermatchError, match="--keep-ratio contradicts --fit squash"):
        create_model("effnet-lite0", fit="squash", keep_ratio=True)


def test_preprocess_options_on_the_command_line() -> None:
    from bannermatch.cli import build_parser
    from bannermatch.cli.options import model_options

    args = build_parser().parse_args(
        [
            "index",
            "in",
            "--out",
            "c",
            "--no-keep-ratio",
            "--resize-size",
            "240",
            "--augment",
            "flip",
        ]
    )
    options = model_options(args)
    assert (options["keep_ratio"], options["resize_size"], options["augment"]) == (
        False,
        240,
        "flip",
    )
    assert (
        model_options(build_parser().parse_args(["eval", "x", "--groups", "g"]))["keep_ratio"]
        is None
    )


@pytest.mark.parametrize("strategy", ["cls", "gem"])
def test_onnx_and_torch_engines_agree(
    model, strategy: str, real_images: dict[str, Image.Image]
) -> None:
    onnx = model if strategy == "cls" else create_model("effnet-lite0", strategy=strategy)
    torch_model = create_model("effnet-lite0", engine="torch", strategy=strategy)
    assert onnx.engine.name == "onnx-cpu" and torch_model.engine.name == "torch-cpu"
    assert onnx.key == torch_model.key
    images = list(real_images.values())
    a = onnx.embed_images(images)
    b = torch_model.embed_images(images)
    assert a.shape == b.shape == (len(images), 1280)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.999
    # the features tell images apart
    sims = a @ a.T
    assert sims[~np.eye(len(images), dtype=bool)].max() < 0.95


def test_strategies_differ(model, real_images: dict[str, Image.Image]) -> None:
    gem = create_model("effnet-lite0", engine="torch", strategy="gem")
    assert gem.key != model.key and gem.key.endswith("__gem")
    images = list(real_images.values())[:3]
    cos = (gem.embed_images(images) * model.embed_images(images)).sum(axis=1)
    assert cos.max() < 0.999


def test_onnx_export_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANNERMATCH_CACHE", str(tmp_path / "cache"))
    first = create_model("effnet-lite0", engine="onnx")
    exported = list((tmp_path / "cache").rglob("*.onnx"))
    assert len(exported) == 1 and "tf_efficientnet_lite0" in exported[0].name
    stat = exported[0].stat()
    cached = sorted((tmp_path / "cache").rglob("*"))
    second = create_model("effnet-lite0", engine="onnx")
    assert sorted((tmp_path / "cache").rglob("*")) == cached  # nothing exported again
    assert list(exported[0].parent.iterdir()) == [exported[0]]
    again = exported[0].stat()
    assert (again.st_mtime_ns, again.st_ino) == (stat.st_mtime_ns, stat.st_ino)
    pixels = np.zeros((1, 3, 224, 224), np.float32)
    np.testing.assert_array_equal(first.embed(pixels), second.embed(pixels))


def test_an_exported_model_loads_without_timm() -> None:
    """Once exported and quantised (into the session's cache, here or by an earlier test),
    the default model (int8, as the command line makes it) runs on ONNX Runtime: a new
    process builds no timm network (seconds of start-up and hundreds of megabytes) and
    imports no ONNX or quantisation module (0.7 s), and it is the same model. (PyTorch is
    loaded, for its resampling kernels: models.preprocess.)"""
    made = create_model("effnet-lite0", device="cpu", precision="auto")
    code = (
        "import json, sys; from bannermatch.embed.models import create_model; "
        "m = create_model('effnet-lite0', device='cpu', precision='auto'); "
        "print(json.dumps([m.manifest(), m.labels, 'timm' in sys.modules, "
        "'bannermatch.embed.models.network' in sys.modules, 'onnx' in sys.modules, "
        "'onnxruntime.quantization' in sys.modules]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    manifest, labels, *imported = json.loads(run.stdout)
    assert imported == [False, False, False, False]
    assert manifest == json.loads(json.dumps(made.manifest())) and labels == "imagenet-1k"
    assert manifest["key"] == "effnet-lite0__pad224-bicubic__cls-int8"


def test_manifest_describes_the_model(model) -> None:
    m = model.manifest()
    assert m["model"] == "effnet-lite0" and m["dim"] == 1280 and m["key"] == model.key
    assert m["preprocess"]["crop_size"] == 224 and m["preprocess"]["resize_size"] == 256
    assert list(m["preprocess"]["mean"]) == list(m["preprocess"]["std"]) == [0.5, 0.5, 0.5]
    assert len(m["weights"]["sha256"]) == 64


def test_unknown_model_strategy_engine_device() -> None:
    with pytest.raises(ModelError, match="unknown model 'nope'; available: effnet-lite0, "):
        create_model("nope")
    with pytest.raises(ModelError, match="strategy 'multiscale' is not available for clip"):
        create_model("clip-vit-b32", strategy="multiscale")
    with pytest.raises(ModelError, match="unknown augment 'mirror'"):
        create_model("effnet-lite0", augment="mirror")
    with pytest.raises(ModelError, match="unknown engine"):
        create_model("effnet-lite0", engine="tensorrt")
    with pytest.raises(ModelError, match="unknown device"):
        create_model("effnet-lite0", device="tpu")


def test_unknown_model_on_the_command_line(cli, tmp_path: Path, edge_cases_dir: Path) -> None:
    proc = cli(
        "index",
        edge_cases_dir / "base_images",
        "--out",
        tmp_path / "c",
        "--model",
        "nope",
        check=False,
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("bannermatch: error: unknown model 'nope'; available: effnet-lite0, ")
    assert "timm:<name>" in line
    assert not os.path.exists(tmp_path / "c" / "models")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_half_precision_agrees_with_onnx(model, real_images: dict[str, Image.Image]) -> None:
    gpu = create_model("effnet-lite0", engine="torch", device="cuda")
    assert gpu.engine.name == "torch-cuda" and gpu.key == model.key
    images = list(real_images.values())
    a, b = model.embed_images(images), gpu.embed_images(images)
    assert b.dtype == np.float32 and b.shape == a.shape
    assert (a * b).sum(axis=1).min() > 0.999
