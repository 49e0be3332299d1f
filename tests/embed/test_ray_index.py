"""``bannermatch index --engine ray``: the Ray Data path against the single-machine one.

The Ray tests share one local cluster (``ray.init(num_cpus=2)`` in this process, started
once for the module: it costs seconds); CLI runs join it with ``--address`` and its GCS
address, except the first run of the Ctrl-C test, which starts (and must leave) its own
with ``--address local``. They run on real covers and skip with the reason when Ray is not
installed.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bannermatch.embed.index import index
from support.cli import chunked_rows, signal_after_chunks
from support.cores import all_cores

KEY = "effnet-lite0__pad224-bicubic__cls"
CORRUPT = "mixed_images/ukbench09268_corrupt.jpg"
#: what may differ between the manifests of the two paths: the engine, and when
VOLATILE = {"engine", "generation", "updated"}


def needs_ray() -> Any:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install bannermatch[ray])")
    pytest.importorskip("ray.data", reason="Ray Data is not installed")
    return ray


@pytest.fixture(scope="module", autouse=True)
def on_every_core() -> Any:
    """The module's tests, their clusters and CLI runs on every core: Ray's processes
    mostly wait on each other, which one core makes slow (81 s against 56 s)."""
    with all_cores():
        yield


@pytest.fixture(scope="module")
def ray_cluster():
    """A local cluster of this machine's 2 cores, in this process, for the module's tests."""
    ray = needs_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_address(ray_cluster: Any) -> str:
    """The GCS address of the module's cluster, for ``index --engine ray --address``."""
    return str(ray_cluster.get_runtime_context().gcs_address)


@pytest.fixture(scope="module")
def titled(tmp_path_factory: pytest.TempPathFactory, skimage_dir: Path) -> Path:
    """5 titled photos (``in``), read by OCR and indexed with fp32 rows, as the cluster
    embeds (``coll``): built once, copied by the tests that write to it."""
    pytest.importorskip("rapidocr_onnxruntime", reason="the 'ocr' extra is not installed")
    from support.servers import build_titled_collection

    base = tmp_path_factory.mktemp("titled")
    build_titled_collection(base, skimage_dir, "--precision", "fp32")
    return base


def covers(covers_dir: Path, n: int, start: int = 0) -> list[Path]:
    return sorted((covers_dir / "images").glob("*.jpg"))[start : start + n]


def stored(collection: Path, key: str = KEY) -> dict[str, Any]:
    folder = collection / "models" / key
    return {
        "ids": json.loads((folder / "items.json").read_text("utf-8")),
        "fingerprints": json.loads((folder / "fingerprints.json").read_text("utf-8")),
        "embeddings": np.load(folder / "embeddings.npy").astype(np.float32),
        "norms": np.load(folder / "norms.npy"),
        "manifest": json.loads((folder / "manifest.json").read_text("utf-8")),
    }


def catalog_rows(collection: Path) -> dict[str, tuple]:
    db = sqlite3.connect(collection / "catalog.sqlite")
    try:
        return {
            r[0]: r[1:]
            for r in db.execute(
                "SELECT id, name, sha256, width, height, mode, format, status, reason FROM items"
            )
        }
    finally:
        db.close()


def assert_same_collection(ray_out: Path, local_out: Path, key: str = KEY) -> None:
    """Same rows in the same order, same vectors, same catalogue; manifests equal but for
    the engine, which names Ray."""
    got, want = stored(ray_out, key), stored(local_out, key)
    assert got["ids"] == want["ids"]
    assert got["fingerprints"] == want["fingerprints"]
    a, b = got["embeddings"], want["embeddings"]  # float16 rows: normalise before comparing
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.9999, cosine.min()
    np.testing.assert_allclose(got["embeddings"], want["embeddings"], atol=2e-3)
    np.testing.assert_allclose(got["norms"], want["norms"], rtol=1e-3)
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE}  # noqa: E731
    assert strip(got["manifest"]) == strip(want["manifest"])
    assert got["manifest"]["engine"] == f"ray/{want['manifest']['engine']}" == "ray/onnx-cpu"
    assert catalog_rows(ray_out) == catalog_rows(local_out)


def test_ray_path_equals_the_single_machine_path(
    ray_cluster, tmp_path: Path, covers_dir: Path, edge_cases_dir: Path, model
) -> None:
    imgs = tmp_path / "imgs"
    (imgs / "nested").mkdir(parents=True)
    for p in covers(covers_dir, 18):
        shutil.copy2(p, imgs / p.name)
    for p in covers(covers_dir, 6, start=18):
        shutil.copy2(p, imgs / "nested" / p.name)
    shutil.copy2(edge_cases_dir / CORRUPT, imgs / "broken.jpg")

    local = index(imgs, tmp_path / "local", model, batch_size=8, progress=False)
    # batches of 5: blocks end in other places than the local run's, rows do not move
    ray = index(imgs, tmp_path / "ray", "effnet-lite0", engine="ray", batch_size=5, progress=False)
    assert (ray.scanned, ray.embedded, ray.count) == (local.scanned, local.embedded, 24)
    assert (ray.scanned, ray.embedded) == (25, 24)
    assert [b["id"] for b in ray.bad] == [b["id"] for b in local.bad] == ["broken"]
    assert ray.bad[0]["reason"] == local.bad[0]["reason"]
    assert_same_collection(tmp_path / "ray", tmp_path / "local")

    # incremental: a new image is embedded on the cluster, the others are up to date
    extra = covers(covers_dir, 1, start=30)[0]
    shutil.copy2(extra, imgs / extra.name)
    again = index(imgs, tmp_path / "ray", "effnet-lite0", engine="ray", progress=False)
    assert (again.up_to_date, again.embedded, again.count) == (25, 1, 25)
    index(imgs, tmp_path / "local", model, progress=False)
    assert_same_collection(tmp_path / "ray", tmp_path / "local")


def test_ray_embeds_the_art_only_key_as_the_local_engine_does(
    ray_cluster, titled: Path, tmp_path: Path, model
) -> None:
    """``--mask-text`` on the cluster: the decoding tasks paint over the text boxes the
    driver read from the OCR store, and the rows equal the local engine's."""
    from bannermatch.ocr.mask import mask_key

    images = titled / "in"
    local, ray = tmp_path / "local", tmp_path / "ray"
    for out in (local, ray):
        shutil.copytree(titled / "coll", out)  # the same catalogue and OCR store
    want = index(images, local, model, text_mask="blur", progress=False)
    got = index(images, ray, "effnet-lite0", engine="ray", text_mask="blur", batch_size=2,
                progress=False)  # fmt: skip
    assert got.model_key == want.model_key == mask_key(KEY, "blur")
    assert (got.embedded, got.count) == (want.embedded, want.count) == (5, 5)
    assert_same_collection(ray, local, got.model_key)
    assert stored(ray, got.model_key)["manifest"]["text_mask"]["method"] == "blur"
    # the rows are the masked images', not the plain ones: the titles were painted over
    plain, masked = stored(ray)["embeddings"], stored(ray, got.model_key)["embeddings"]
    cosine = (plain * masked).sum(axis=1) / np.linalg.norm(plain, axis=1)
    assert (cosine / np.linalg.norm(masked, axis=1)).max() < 0.999
    again = index(images, ray, "effnet-lite0", engine="ray", text_mask="blur", progress=False)
    assert (again.up_to_date, again.embedded) == (5, 0)  # incremental, as locally


@pytest.mark.slow
def test_ray_cli_mask_text(ray_address: str, titled: Path, tmp_path: Path, model) -> None:
    """``index --mask-text --engine ray`` from the CLI, joining a running cluster, for the
    plain rows and the art-only ones, which equal the local engine's."""
    from bannermatch.ocr.mask import mask_key
    from support.cli import run_cli

    root, out = tmp_path / "local", tmp_path / "ray"
    for folder in (root, out):
        shutil.copytree(titled / "coll", folder)
    args = ["index", titled / "in", "--out", out, "--mask-text", "--engine", "ray"]
    got = json.loads(run_cli(*args, "--address", ray_address, "--json", "-q").stdout)
    assert (got["up_to_date"], got["ocr"]["kept"]) == (5, 5)  # plain rows and text were there
    assert got["text_mask"]["embedded"] == 5 and got["text_mask"]["model_key"] == mask_key(
        KEY, "blur"
    )
    index(titled / "in", root, model, text_mask="blur", progress=False)
    assert_same_collection(out, root, mask_key(KEY, "blur"))


def test_shared_cluster_keeps_a_started_cluster_to_the_end() -> None:
    """Inside ``shared_cluster()`` a run's cluster outlives the run (the next one joins
    it) and is left when the block ends; outside, a run leaves its own at once."""
    needs_ray()
    from bannermatch.embed.ray import RayCluster, RayEmbedder, shared_cluster

    left: list[str] = []

    class Cluster(RayCluster):
        def close(self) -> None:
            left.append(self.ray)

    def run(name: str) -> None:
        embedder = RayEmbedder()
        embedder.cluster = Cluster(name, True, 2.0, 0.0, 1)
        embedder.close()

    run("alone")
    assert left == ["alone"]
    with shared_cluster():
        run("plain")
        run("art only")
        assert left == ["alone"]
    assert left == ["alone", "plain", "art only"]


def _shard(path: Path, files: list[Path]) -> None:
    with tarfile.open(path, "w") as tar:
        for f in files:
            tar.add(f, arcname=f.name)
            info = tarfile.TarInfo(f.stem + ".txt")
            caption = f"cover {f.stem}".encode()
            info.size = len(caption)
            tar.addfile(info, io.BytesIO(caption))


@pytest.mark.slow
def test_ray_cli_on_shards_resumes_after_ctrl_c(
    ray_address: str, tmp_path: Path, covers_dir: Path, model
) -> None:
    """The CLI starts its own local cluster, reads webdataset shards, is interrupted once
    chunks are on disk, and a second run (joining a running cluster) embeds only what was
    left."""
    shards = tmp_path / "shards"
    shards.mkdir()
    files = covers(covers_dir, 60, start=40)
    for n in range(3):
        _shard(shards / f"{n:05d}.tar", files[n * 20 : (n + 1) * 20])
    out = tmp_path / "ray"
    chunks = out / "models" / KEY / "chunks"
    args = ["index", shards, "--out", out, "--engine", "ray", "--address", "local"]
    # Ctrl-C once the first chunk is on disk: the CLI leaves its cluster and exits. Blocks
    # of 2, decoded one at a time: 29 more blocks after the first take about 2 s
    returncode, err = signal_after_chunks(
        *args, "--batch-size", "2", "--workers", "1", "-q",
        chunks=chunks, n=1, sig=signal.SIGINT, seconds=300,
    )  # fmt: skip
    assert returncode == 130, err  # 0: the run ignored Ctrl-C and finished
    assert "interrupted" in err
    n_chunked = chunked_rows(chunks)
    assert 2 <= n_chunked < 60

    from support.cli import run_cli

    args[args.index("local")] = ray_address
    resumed = json.loads(run_cli(*args, "--json", "-q").stdout)
    assert resumed["up_to_date"] >= n_chunked and resumed["count"] == 60
    assert resumed["embedded"] == 60 - resumed["up_to_date"]
    index(shards, tmp_path / "local", model, progress=False)
    assert_same_collection(out, tmp_path / "local")
    assert catalog_rows(out)[files[0].stem][0] == f"cover {files[0].stem}"  # the caption
    assert not list(chunks.glob("*.npz"))


def test_without_ray_a_one_line_error(cli, tmp_path: Path) -> None:
    """Ray hidden from the import system, as on an installation without the extra."""
    (tmp_path / "imgs").mkdir()
    code = (
        "import sys; sys.modules['ray'] = None; from bannermatch.cli import main; "
        f"sys.exit(main(['index', {str(tmp_path / 'imgs')!r}, '--out', "
        f"{str(tmp_path / 'c')!r}, '--engine', 'ray']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "bannermatch: error: --engine ray needs Ray, which is not installed: "
        "pip install 'bannermatch[ray]'"
    ]
    assert not (tmp_path / "c").exists()


def test_ray_options_need_the_ray_engine(cli, tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    for extra in (["--address", "auto"], ["--actors", "2"]):
        proc = cli("index", tmp_path / "imgs", "--out", tmp_path / "c", *extra, check=False)
        assert proc.returncode == 1
        assert "--address and --actors go with --engine ray" in proc.stderr
    proc = cli("eval", tmp_path / "imgs", "--groups", "x.tsv", "--engine", "ray", check=False)
    assert proc.returncode == 2 and "invalid choice: 'ray'" in proc.stderr


def test_ray_runs_fp32_and_int8_is_one_line(cli_here, tmp_path: Path) -> None:
    """The driver's model is checked before any cluster is joined: int8 on Ray is an error
    in one line, and nothing is written."""
    needs_ray()
    (tmp_path / "imgs").mkdir()
    args = ["index", tmp_path / "imgs", "--out", tmp_path / "c", "--engine", "ray"]
    proc = cli_here(*args, "--precision", "int8", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "bannermatch: error: int8 runs on the onnx engine (CPU) only; use --engine onnx"
    ]
    assert not (tmp_path / "c").exists()


def test_actor_plan_follows_the_cluster() -> None:
    """One actor per GPU on a GPU cluster (PyTorch fp16), else one per node (ONNX Runtime);
    a plan that cannot run is a one-line error before any work."""
    from bannermatch.embed.ray import ActorPlan, RayCluster, plan_actors
    from bannermatch.errors import BannermatchError

    gpu = RayCluster(None, False, cpus=64, gpus=8, nodes=2)
    cpu = RayCluster(None, False, cpus=32, gpus=0, nodes=2)
    assert plan_actors(gpu) == ActorPlan(8, "cuda", 1.0, 1.0)
    assert plan_actors(gpu).engine == "torch-cuda"
    assert plan_actors(gpu, "cuda:0", actors=2).actors == 2
    assert plan_actors(gpu, "cpu") == ActorPlan(2, "cpu", 0.0, 1.0)
    assert plan_actors(cpu) == ActorPlan(2, "cpu", 0.0, 1.0)
    assert plan_actors(cpu).engine == "onnx-cpu"
    assert plan_actors(cpu, actors=31).actors == 31
    with pytest.raises(BannermatchError, match="do not fit a Ray cluster of 32 CPUs"):
        plan_actors(cpu, actors=32)
    with pytest.raises(BannermatchError, match="asks for GPUs, but the Ray cluster has none"):
        plan_actors(cpu, "cuda")
    with pytest.raises(BannermatchError, match="unknown device 'tpu'"):
        plan_actors(cpu, "tpu")
