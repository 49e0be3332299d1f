"""The model zoo: every preset's architecture, timm / open_clip / torch.hub loading, the
weights cache and the fast error when weights are missing offline (random weights only)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bannermatch.embed.models import PRESETS, create_model, get_spec
from bannermatch.embed.models.loaders import loader_for
from bannermatch.embed.models.network import FeatureExtractor
from bannermatch.embed.models.weights import RANDOM
from bannermatch.errors import ModelError

#: every test here builds real (randomly initialised) networks: integration, not --fast
pytestmark = pytest.mark.integration

#: a port nothing listens on: a download attempt fails at once
DEAD_ENDPOINT = "http://127.0.0.1:9"


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty weights caches and unreachable hosts: as on a machine without internet."""
    from huggingface_hub import constants

    from bannermatch.embed.models import loaders

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", DEAD_ENDPOINT)
    monkeypatch.setattr(loaders, "GITHUB", DEAD_ENDPOINT)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BANNERMATCH_RANDOM_WEIGHTS", raising=False)
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    yield cache
    torch.hub.set_dir(os.path.join(torch.hub._get_torch_home(), "hub"))


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_architecture_and_strategy_dims(name: str) -> None:
    """Built without weights (meta device): each strategy's output width."""
    spec = get_spec(name)
    loader = loader_for(spec)
    size = int(loader.data_config()["input_size"][-1])
    dims = {}
    with torch.device("meta"):
        built = loader.build(RANDOM, size)
        for strategy in spec.strategies:
            extractor = FeatureExtractor(
                built.image, built.kind, strategy, patch_size=built.patch_size, input_size=size
            )
            dims[strategy] = tuple(extractor(torch.empty(2, 3, size, size)).shape)
    assert built.kind == spec.kind
    assert dims["cls"] == (2, spec.dim)
    if "multiscale" in dims:
        assert dims["multiscale"] == (2, spec.dim)
    if spec.kind in ("vit", "clip-vit"):
        assert dims["cls+avg"] == (2, 2 * spec.dim) and dims["gem"] == (2, spec.dim)
    elif spec.kind == "cnn":  # avg+max and GeM of the last feature map
        channels = dims["gem"][1]
        assert dims["cls+avg"] == (2, 2 * channels)
    assert set(spec.strategies) >= {"cls"}


@pytest.mark.parametrize(
    ("name", "crop", "dim"),
    [("dino-vits16", 112, 384), ("mobilenetv3-large", 128, 1280), ("timm:resnet18", 96, 512)],
)
def test_random_weights_embed_end_to_end(name: str, crop: int, dim: int) -> None:
    model = create_model(name, pretrained=False, engine="torch", crop_size=crop)
    assert model.dim == dim and model.preprocess.crop_size == crop
    pixels = np.random.default_rng(0).normal(size=(3, 3, crop, crop)).astype(np.float32)
    emb = model.embed(pixels)
    assert emb.shape == (3, dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    manifest = model.manifest()
    assert manifest["weights"] == {
        "source": "random weights (tests only)",
        "sha256": "random",
        "random": True,
    }
    assert manifest["dim"] == dim and manifest["key"] == model.key
    # seeded: a second build gives the same model, so a query matches its index
    again = create_model(name, pretrained=False, engine="torch", crop_size=crop)
    np.testing.assert_allclose(again.embed(pixels), emb, atol=1e-5)


def test_random_weights_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANNERMATCH_RANDOM_WEIGHTS", "1")
    model = create_model("dino-vits8", engine="torch", crop_size=64)
    assert model.weights.random and model.dim == 384


def test_model_keys_are_folder_names() -> None:
    model = create_model("timm:resnet18.a1_in1k", pretrained=False, engine="torch")
    assert model.key == "timm-resnet18.a1_in1k__crop235-224-bicubic__cls"
    assert model.spec.name == "timm:resnet18.a1_in1k"


def test_missing_weights_fail_fast_and_clearly(offline: Path) -> None:
    cases = {
        "clip-vit-b32": "models--timm--vit_base_patch32_clip_224.openai",
        "dino-vits16": "models--timm--vit_small_patch16_224.dino",
        "dinov2-vitg14": "models--timm--vit_giant_patch14_dinov2.lvd142m",
        "timm:resnet18": "models--timm--resnet18.a1_in1k",
        "open_clip:ViT-B-16/laion2b_s34b_b88k": "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K",
    }
    for name, folder in cases.items():
        t0 = time.perf_counter()
        with pytest.raises(ModelError) as info:
            create_model(name)
        assert time.perf_counter() - t0 < 5, name
        message = str(info.value)
        assert message.startswith(f"{name}: weights not cached at {offline / folder} ")
        assert "cannot be downloaded: http://127.0.0.1:9 is unreachable" in message
        assert "\n" not in message
    with pytest.raises(ModelError, match=r"repository not cached in .* cannot be downloaded"):
        create_model("hub:facebookresearch/dinov2:dinov2_vits14")


def test_missing_weights_on_the_command_line(cli, tmp_path: Path, skimage_dir: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "HF_ENDPOINT": DEAD_ENDPOINT,
        "BANNERMATCH_RANDOM_WEIGHTS": "",
    }
    t0 = time.perf_counter()
    proc = cli(
        "index", skimage_dir, "--out", tmp_path / "c", "--model", "dino-vitb8", check=False, env=env
    )
    assert time.perf_counter() - t0 < 60  # start-up included, on a loaded 2-core machine
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"bannermatch: error: dino-vitb8: weights not cached at "
        f"{tmp_path / 'hf' / 'models--timm--vit_base_patch8_224.dino'} and cannot be downloaded: "
        f"{DEAD_ENDPOINT} is unreachable ([Errno 111] Connection refused)"
    ]


def test_cached_timm_weights_load_without_network(offline: Path) -> None:
    """A file in the Hugging Face cache (as any tool leaves it) is loaded, offline."""
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("resnet18", pretrained=False)
    snapshot = offline / "models--timm--resnet18.a1_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (offline / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (offline / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("0" * 40)
    save_file(source.state_dict(), str(snapshot / "model.safetensors"))

    assert loader_for(get_spec("timm:resnet18")).cached()
    model = create_model("timm:resnet18", engine="torch")
    assert not model.weights.random and len(model.weights.sha256) == 64
    assert model.weights.path == snapshot / "model.safetensors"
    net = model.network().image
    assert torch.equal(net.conv1.weight, source.conv1.weight)
    head = model.label_head()
    assert head is not None and head.subset == "imagenet-1k" and head.weight.shape == (1000, 512)


def test_unknown_names_and_malformed_specs() -> None:
    with pytest.raises(ModelError, match="timm:nope_net: timm has no model named 'nope_net'"):
        create_model("timm:nope_net", pretrained=False)
    with pytest.raises(ModelError, match="open_clip has no architecture 'Nope-1'"):
        create_model("open_clip:Nope-1/openai", pretrained=False)
    with pytest.raises(ModelError, match="expected open_clip:<architecture>/<pretrained tag>"):
        create_model("open_clip:ViT-B-32")
    with pytest.raises(ModelError, match="expected hub:<owner/repo>:<entrypoint>"):
        create_model("hub:facebookresearch/dinov2")
    with pytest.raises(ModelError, match=r"no hubconf\.py in /nonexistent"):
        create_model("hub:/nonexistent:tiny")


def test_open_clip_tiny_model(tiny_clip: str) -> None:
    model = create_model(tiny_clip, pretrained=False, engine="torch")
    assert model.dim == 32 and model.preprocess.crop_size == 64
    assert model.key == "open_clip-bm-tiny-clip-random__crop64-64-bicubic__cls"
    # open_clip's own preprocessing config: OpenAI mean, shortest-side resize, centre crop
    assert model.preprocess.mean[0] == pytest.approx(0.48145466)
    text = model.embed_text(["a knight fighting a dragon", "a red car"])
    assert text.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    assert model.manifest()["text"] is True
    wide = create_model(tiny_clip, pretrained=False, engine="torch", strategy="cls+avg")
    assert wide.dim == 64 and not wide.has_text
    with pytest.raises(ModelError, match="does not apply to this clip-vit model"):
        create_model(tiny_clip, pretrained=False, strategy="multiscale")
    with pytest.raises(ModelError, match="no pretrained tag 'random' for bm-tiny-clip"):
        create_model(tiny_clip)


def test_hub_entrypoint_from_a_local_folder(hub_dir: Path) -> None:
    name = f"hub:{hub_dir}:tiny"
    model = create_model(name, engine="torch")
    assert model.dim == 24 and model.spec.source == "hub"
    assert (model.preprocess.resize_size, model.preprocess.crop_size) == (256, 224)
    assert len(model.weights.sha256) == 64 and not model.weights.random
    pixels = np.random.default_rng(1).normal(size=(2, 3, 224, 224)).astype(np.float32)
    real = model.embed(pixels)
    # the entrypoint's pretrained=False path, and its own weights differ
    rand = create_model(name, engine="torch", pretrained=False)
    assert rand.weights.random and rand.weights.sha256 != model.weights.sha256
    assert np.abs(rand.embed(pixels) - real).max() > 1e-3
    with pytest.raises(ModelError, match="'gem' is not available"):
        create_model(name, strategy="gem")


def test_models_command(cli_here: Callable[..., Any]) -> None:
    listed = json.loads(cli_here("models", "--json").stdout)["models"]
    by_name = {m["name"]: m for m in listed}
    assert list(by_name) == list(PRESETS)
    assert by_name["effnet-lite0"]["cached"] is True and by_name["effnet-lite0"]["default"]
    assert by_name["effnet-lite0"]["labels"] == "imagenet-1k"
    assert by_name["clip-vit-b32"]["text"] is True and by_name["dino-vits16"]["text"] is False
    assert by_name["dinov2-vitg14"]["dim"] == 1536 and by_name["dinov2-vitg14"]["input_size"] == 518
    assert by_name["clip-vit-b32"]["input_size"] == 224
    assert "multiscale" not in by_name["clip-vit-b32"]["strategies"]
    from bannermatch.embed.models.listing import list_models

    table = list_models().summary()
    assert "weights cached" in table and "text tower" in table
    assert "effnet-lite0 (default)  1280    224  yes" in table


def _raw(model, pixels: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The engine's unnormalised features."""
    return np.asarray(model.engine(pixels), np.float32)


@pytest.mark.parametrize(
    ("name", "crop", "dim", "pretrained"),
    [("timm:vit_tiny_patch16_224", 64, 192, False), ("effnet-lite0", 128, 1280, None)],
)
def test_strategies_on_a_vit_and_a_cnn(name: str, crop: int, dim: int, pretrained) -> None:  # type: ignore[no-untyped-def]
    pixels = np.random.default_rng(2).normal(size=(2, 3, crop, crop)).astype(np.float32)
    models = {
        s: create_model(name, engine="torch", strategy=s, crop_size=crop, pretrained=pretrained)
        for s in ("cls", "cls+avg", "gem", "multiscale")
    }
    dims = {s: m.dim for s, m in models.items()}
    assert dims == {"cls": dim, "cls+avg": 2 * dim, "gem": dim, "multiscale": dim}
    assert len({m.key for m in models.values()}) == 4
    assert models["cls+avg"].key.endswith("__cls+avg")
    raw = {s: _raw(m, pixels) for s, m in models.items()}
    assert {s: r.shape for s, r in raw.items()} == {s: (2, d) for s, d in dims.items()}
    # cls+avg starts with the pooled (CLS, or average-pooled) features themselves
    np.testing.assert_allclose(raw["cls+avg"][:, :dim], raw["cls"], rtol=1e-4, atol=1e-5)
    emb = {s: m.embed(pixels) for s, m in models.items()}
    for s in ("gem", "multiscale"):  # each strategy gives other features
        assert (emb[s] * emb["cls"]).sum(axis=1).max() < 0.9999, s


def test_multiscale_is_the_mean_over_scales() -> None:
    from bannermatch.embed.models.network import MULTISCALE, scaled_sizes

    crop = 64
    model = create_model(
        "timm:vit_tiny_patch16_224",
        engine="torch",
        strategy="multiscale",
        crop_size=crop,
        pretrained=False,
    )
    sizes = scaled_sizes(crop, 16)
    assert sizes == [48, 64, 80] and len(sizes) == len(MULTISCALE)
    pixels = torch.from_numpy(
        np.random.default_rng(3).normal(size=(1, 3, crop, crop)).astype(np.float32)
    )
    extractor = model.engine.module
    with torch.inference_mode():
        views = [
            extractor.single(
                torch.nn.functional.interpolate(pixels, size=(s, s), mode="bilinear")
                if s != crop
                else pixels
            )
            for s in sizes
        ]
        want = torch.stack(views).mean(dim=0).numpy()
    np.testing.assert_allclose(_raw(model, pixels.numpy()), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "strategy", "pretrained"),
    [("effnet-lite0", "cls", None), ("timm:vit_tiny_patch16_224", "multiscale", False)],
)
def test_flip_augment_is_mirror_invariant(name: str, strategy: str, pretrained) -> None:  # type: ignore[no-untyped-def]
    pixels = np.random.default_rng(4).normal(size=(2, 3, 96, 96)).astype(np.float32)
    mirrored = np.ascontiguousarray(pixels[..., ::-1])
    kwargs = {"engine": "torch", "strategy": strategy, "crop_size": 96, "pretrained": pretrained}
    plain = create_model(name, **kwargs)
    flip = create_model(name, augment="flip", **kwargs)
    assert flip.key == f"{plain.key}-flip" and flip.manifest()["augment"] == "flip"
    assert flip.dim == plain.dim
    a, b = flip.embed(pixels), flip.embed(mirrored)
    assert (a * b).sum(axis=1).min() > 0.9999
    p, q = plain.embed(pixels), plain.embed(mirrored)
    assert (p * q).sum(axis=1).min() < 0.999
    # the mean of the two views' raw features
    np.testing.assert_allclose(
        _raw(flip, pixels), (_raw(plain, pixels) + _raw(plain, mirrored)) / 2, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    ("name", "strategy", "augment", "crop"),
    [
        ("timm:vit_tiny_patch16_224", "cls", "none", 64),
        ("timm:vit_tiny_patch16_224", "multiscale", "flip", 64),
        ("timm:vit_tiny_patch16_224", "gem", "none", 64),
        ("timm:resnet18", "cls+avg", "none", 64),
        ("timm:resnet18", "multiscale", "none", 64),
    ],
)
def test_onnx_and_torch_agree(name: str, strategy: str, augment: str, crop: int) -> None:
    kwargs = {"strategy": strategy, "augment": augment, "crop_size": crop, "pretrained": False}
    onnx = create_model(name, engine="onnx", **kwargs)
    ref = create_model(name, engine="torch", **kwargs)
    assert onnx.engine.name == "onnx-cpu" and ref.engine.name == "torch-cpu"
    assert onnx.key == ref.key and onnx.dim == ref.dim
    pixels = np.random.default_rng(5).normal(size=(5, 3, crop, crop)).astype(np.float32)
    a, b = onnx.embed(pixels), ref.embed(pixels)
    assert a.shape == b.shape == (5, ref.dim)
    assert (a * b).sum(axis=1).min() > 0.9999
    assert (a @ a.T)[~np.eye(5, dtype=bool)].max() < 0.9999  # random weights still tell apart
    exported = list((Path(os.environ["BANNERMATCH_CACHE"]) / "onnx").glob("*.onnx"))
    tag = strategy if augment == "none" else f"{strategy}-{augment}"
    assert any(f"-{crop}px-{tag}-opset" in p.name for p in exported)


def test_onnx_for_open_clip_and_hub(tiny_clip: str, hub_dir: Path) -> None:
    for name, kwargs, size in [
        (tiny_clip, {"pretrained": False, "strategy": "cls+avg"}, 64),
        (f"hub:{hub_dir}:tiny", {"crop_size": 96}, 96),
    ]:
        onnx = create_model(name, engine="onnx", **kwargs)
        ref = create_model(name, engine="torch", **kwargs)
        pixels = np.random.default_rng(6).normal(size=(3, 3, size, size)).astype(np.float32)
        assert (onnx.embed(pixels) * ref.embed(pixels)).sum(axis=1).min() > 0.9999, name


def test_an_export_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Unsupported: aten::weird_op\nTorch IR graph at exception: graph(...)")

    monkeypatch.setattr(torch.onnx, "export", fails)
    with pytest.raises(ModelError) as info:
        create_model("timm:resnet18", engine="onnx", pretrained=False, crop_size=40)
    assert str(info.value) == (
        "timm:resnet18: cannot export to ONNX (RuntimeError: Unsupported: aten::weird_op); "
        "use --engine torch"
    )


def test_device_and_engine_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    from bannermatch.embed.models import engines
    from bannermatch.embed.models.engines import resolve_device, resolve_engine

    assert resolve_engine("auto", "cpu") == "onnx" and resolve_engine("auto", "cuda") == "torch"
    with pytest.raises(ModelError, match="the onnx engine runs on the CPU only"):
        resolve_engine("onnx", "cuda")
    if sys.platform.startswith("linux"):  # no GPU driver: no GPU, whatever PyTorch would say
        monkeypatch.setattr(engines, "GPU_DRIVER_FILES", ("/nonexistent/gpu-driver",))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(engines, "GPU_DRIVER_FILES", (__file__,))  # a driver: PyTorch decides
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ModelError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_half_precision_vit_agrees_with_onnx() -> None:
    kwargs = {"crop_size": 64, "pretrained": False, "strategy": "cls+avg"}
    gpu = create_model("timm:vit_tiny_patch16_224", device="auto", **kwargs)
    cpu = create_model("timm:vit_tiny_patch16_224", device="cpu", **kwargs)
    assert gpu.engine.name == "torch-cuda" and cpu.engine.name == "onnx-cpu"
    assert gpu.engine.module.network.patch_embed.proj.weight.dtype == torch.float16
    pixels = np.random.default_rng(7).normal(size=(4, 3, 64, 64)).astype(np.float32)
    assert (gpu.embed(pixels) * cpu.embed(pixels)).sum(axis=1).min() > 0.999
