"""nodes/local_comfy/snapshot_install.py without a real install: finding the archive (and skipping without one),
the requirements filter, a safe unpack, and when a stamp counts. The real install runs in `make test-e2e` / CI."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from antithetic_sampling.nodes.local_comfy import snapshot_install as si


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTITHETIC_SAMPLING_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_archive(folder, version: str, files: dict[str, str]):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ComfyUI-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_missing_snapshot_skips_with_the_reason(tmp_path, cache, capsys):
    (tmp_path / "snaps").mkdir()
    make_archive(tmp_path / "snaps", "0.3.64", {"ComfyUI-0.3.64/main.py": ""})
    with pytest.raises(si.SnapshotMissing, match=r"ComfyUI-0\.33\.0\.tar\.gz does not exist.*ComfyUI-0\.3\.64"):
        si.find_snapshot("0.33.0", tmp_path / "snaps")
    assert si.main(["test", "--version", "0.33.0", "--snapshots", str(tmp_path / "snaps"), "--", "-q"]) == 0
    assert "SKIPPED" in capsys.readouterr().out
    assert si.main(["install", "--version", "0.33.0", "--snapshots", str(tmp_path / "nowhere")]) == 3
    assert not (cache / "comfyui" / "0.33.0" / "ComfyUI-0.33.0").exists()


def test_requirements_filter_drops_only_the_torch_family():
    text = "comfyui-frontend-package==1.49.6\ntorch\ntorchsde\ntorchvision\ntorchaudio>=2\nspandrel\nnumpy>=1.25.0\n"
    kept = si.filtered_requirements(text).split()
    assert kept == ["comfyui-frontend-package==1.49.6", "torchsde", "numpy>=1.25.0"]


def test_unpack_is_atomic_and_refuses_members_outside_the_folder(tmp_path, cache):
    good = make_archive(tmp_path / "a", "0.1.0", {"ComfyUI-0.1.0/main.py": "print()",
                                                  "ComfyUI-0.1.0/comfyui_version.py": '__version__ = "0.1.0"'})
    si.unpack(good, "0.1.0")
    assert (si.checkout_path("0.1.0") / "main.py").read_text() == "print()"
    assert si._same_version("0.1.0")
    evil = make_archive(tmp_path / "b", "0.2.0", {"ComfyUI-0.2.0/main.py": "", "ComfyUI-0.2.0/../../escaped.txt": "x"})
    with pytest.raises(Exception):  # noqa: B017 - tarfile's data filter or our own check, either refuses
        si.unpack(evil, "0.2.0")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not si.checkout_path("0.2.0").exists()
    assert [p.name for p in si.install_root("0.2.0").iterdir()] == []  # no half-unpacked folder left
    wrong = make_archive(tmp_path / "c", "0.3.0", {"ComfyUI-0.3.0/README.md": ""})
    with pytest.raises(si.InstallFailed, match="no ComfyUI-0.3.0/main.py"):
        si.unpack(wrong, "0.3.0")


def test_stamp_counts_only_for_the_same_archive_and_recipe(tmp_path, cache):
    archive = make_archive(tmp_path / "a", "0.1.0", {"ComfyUI-0.1.0/main.py": ""})
    si.unpack(archive, "0.1.0")
    python = si.venv_python("0.1.0")
    python.parent.mkdir(parents=True)
    python.write_text("")
    digest = si.sha256(archive)
    stamp = si.install_root("0.1.0") / si.STAMP
    assert not si.stamp_is_current("0.1.0", digest)  # no stamp yet: an install must be checked first
    stamp.write_text(json.dumps({"recipe": si.RECIPE, "archive_sha256": digest}))
    assert si.stamp_is_current("0.1.0", digest)
    assert not si.stamp_is_current("0.1.0", "0" * 64)
    stamp.write_text(json.dumps({"recipe": si.RECIPE - 1, "archive_sha256": digest}))
    assert not si.stamp_is_current("0.1.0", digest)
    with pytest.raises(ValueError, match="0.33.0"):
        si.install_root("latest")
