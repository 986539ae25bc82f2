"""Tests of members.data: loaders, errors, cache, dataset helpers, class weights and describe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import members.data._csv as data_csv
import members.data._load as data_load
from conftest import REPO_ROOT, make_fake_images, write_fake_csv
from members.data import (
    DEFAULT_DATA, DataError, FERDataset, class_weights, describe_dataset, load_dataset, main,
    resolve_data_path,
)

ZEROS = " ".join(["0"] * 2304)


def write_rows(path: Path, rows: list[str], header: str = "emotion,pixels,Usage") -> Path:
    """A CSV with the given header and raw data lines."""
    path.write_text("\n".join([header] + rows) + "\n")
    return path


def save_png(path: Path, array: np.ndarray) -> None:
    """Save a uint8 array (gray or RGB) losslessly, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def image(value: int, size: int = 48) -> np.ndarray:
    """A size x size uint8 image whose first pixel is ``value`` (so images are distinguishable)."""
    out = np.full((size, size), 7, dtype=np.uint8)
    out[0, 0] = value
    return out


def no_parse(*args, **kwargs):
    raise AssertionError("the source was parsed although a valid cache exists")


# --------------------------------------------------------------------------- CSV formats


def test_kaggle_csv_loads_pixels_labels_and_splits(fake_csv):
    data = load_dataset(fake_csv, verbose=False)
    assert len(data) == 84 and data.x.shape == (84, 48, 48)
    assert (data.x.dtype, data.y.dtype, data.ids.dtype) == (np.uint8, np.int64, np.int64)
    assert [len(data.train), len(data.val), len(data.test)] == [42, 21, 21]
    np.testing.assert_array_equal(data.ids, np.arange(84))
    labels = np.repeat(np.arange(7), 6)
    np.testing.assert_array_equal(data.train.y, labels)
    np.testing.assert_array_equal(data.train.x, make_fake_images(labels, seed=0))
    assert data.source == str(fake_csv.resolve()) and data.fingerprint["size"] == fake_csv.stat().st_size


def test_gzip_csv_equals_plain_even_without_gz_suffix(tmp_path, fake_csv):
    gz = write_fake_csv(tmp_path / "fer.csv.gz")
    hidden = write_fake_csv(tmp_path / "fer_gzip.csv", compress=True)
    plain = load_dataset(fake_csv, verbose=False)
    for path in (gz, hidden):
        other = load_dataset(path, verbose=False)
        np.testing.assert_array_equal(other.x, plain.x)
        np.testing.assert_array_equal(other.y, plain.y)
        np.testing.assert_array_equal(other.usage, plain.usage)


def test_icml_variant_with_spaced_header_and_other_column_order(tmp_path, fake_csv):
    lines = fake_csv.read_text().splitlines()[1:]
    rows = [f"{e},{u},{p}" for e, p, u in (line.split(",") for line in lines)]
    icml = write_rows(tmp_path / "icml_face_data.csv", rows, header="emotion, Usage, pixels")
    a, b = load_dataset(icml, verbose=False), load_dataset(fake_csv, verbose=False)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.usage, b.usage)


def test_csv_without_usage_is_all_test_data(tmp_path):
    data = load_dataset(write_fake_csv(tmp_path / "ck.csv", usage=False), verbose=False)
    assert set(data.usage.tolist()) == {"PrivateTest"} and len(data.test) == 84
    assert any("no Usage column" in note for note in data.notes)


def test_unusual_spacing_is_parsed_exactly(tmp_path):
    values = np.arange(2304) % 256
    tabs = "\t".join(map(str, values))
    spaced = "  " + "  ".join(map(str, values)) + " "
    data = load_dataset(write_rows(tmp_path / "s.csv", [f"3,{tabs},Training", f"4,{spaced},PublicTest"]),
                        verbose=False)
    np.testing.assert_array_equal(data.x.reshape(2, -1), np.stack([values, values]))


def test_trailing_blank_lines_are_ignored_with_a_note(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(f"emotion,pixels,Usage\n1,{ZEROS},Training\n\n\n")
    data = load_dataset(path, verbose=False)
    assert len(data) == 1 and any("blank line" in n for n in data.notes)


# --------------------------------------------------------------------------- bad CSV input (one test per case)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv"):
        load_dataset(tmp_path / "nope.csv", verbose=False)


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.csv: empty file"):
        load_dataset(tmp_path / "empty.csv", verbose=False)
    (tmp_path / "header.csv").write_text("emotion,pixels,Usage\n")
    with pytest.raises(DataError, match=r"header.csv: no data rows"):
        load_dataset(tmp_path / "header.csv", verbose=False)


def test_missing_columns(tmp_path):
    path = write_rows(tmp_path / "cols.csv", ["1,Training"], header="emotion,Usage")
    with pytest.raises(DataError, match=r"cols.csv: missing column\(s\) \['pixels'\]"):
        load_dataset(path, verbose=False)


def test_wrong_pixel_count_names_the_line(tmp_path):
    short = " ".join(["0"] * 2303)
    path = write_rows(tmp_path / "n.csv", [f"0,{ZEROS},Training", f"1,{ZEROS},Training", f"2,{short},Training"])
    with pytest.raises(DataError, match=r"n.csv, line 4 \(data row 3\): 2303 pixel values, expected 2304"):
        load_dataset(path, verbose=False)


def test_non_numeric_pixel(tmp_path):
    bad = ZEROS[:-1] + "x7"
    path = write_rows(tmp_path / "nn.csv", [f"0,{ZEROS},Training", f"1,{bad},Training"])
    with pytest.raises(DataError, match=r"nn.csv, line 3 \(data row 2\): non-numeric pixel value 'x7'"):
        load_dataset(path, verbose=False)


def test_pixel_out_of_range(tmp_path):
    for token, message in (("256", "pixel value 256 outside 0..255"), ("-1", "pixel value '-1' outside 0..255")):
        path = write_rows(tmp_path / "r.csv", [f"0,{token} {ZEROS[2:]},Training"])
        with pytest.raises(DataError, match=rf"r.csv, line 2 \(data row 1\): {message}"):
            load_dataset(path, verbose=False)


def test_label_out_of_range(tmp_path):
    path = write_rows(tmp_path / "l.csv", [f"6,{ZEROS},Training", f"7,{ZEROS},Training"])
    with pytest.raises(DataError, match=r"l.csv, line 3 \(data row 2\): emotion label '7' is not an integer 0..6"):
        load_dataset(path, verbose=False)


def test_unknown_usage(tmp_path):
    path = write_rows(tmp_path / "u.csv", [f"0,{ZEROS},Validation"])
    with pytest.raises(DataError, match=r"u.csv, line 2 \(data row 1\): unknown Usage 'Validation'"):
        load_dataset(path, verbose=False)


def test_malformed_row_and_inner_blank_line(tmp_path):
    path = write_rows(tmp_path / "m.csv", [f"0,{ZEROS},Training", f"0,{ZEROS},Training,extra"])
    with pytest.raises(DataError, match=r"m.csv: malformed CSV: .*line 3"):
        load_dataset(path, verbose=False)
    path = write_rows(tmp_path / "b.csv", [f"0,{ZEROS},Training", "", f"0,{ZEROS},Training"])
    with pytest.raises(DataError, match=r"b.csv, line 3 \(data row 2\): blank line"):
        load_dataset(path, verbose=False)


def test_bad_row_in_a_later_chunk_keeps_the_global_line_number(tmp_path, monkeypatch):
    monkeypatch.setattr(data_csv, "CHUNK_ROWS", 5)
    rows = [f"0,{ZEROS},Training"] * 12 + [f"0,{ZEROS} 1,Training"]
    with pytest.raises(DataError, match=r"c.csv, line 14 \(data row 13\): 2305 pixel values"):
        load_dataset(write_rows(tmp_path / "c.csv", rows), verbose=False)


def test_nothing_is_cached_when_loading_fails(tmp_path):
    cache_dir = tmp_path / "cache"
    path = write_rows(tmp_path / "bad.csv", [f"0,{ZEROS},Training", f"9,{ZEROS},Training"])
    with pytest.raises(DataError):
        load_dataset(path, cache_dir=str(cache_dir), verbose=False)
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []


# --------------------------------------------------------------------------- folders


def test_folder_usage_from_file_name_prefixes(tmp_path):
    root = tmp_path / "fer"
    save_png(root / "train/happy/Training_2.png", image(1))
    save_png(root / "train/angry/Training_1.png", image(2))
    save_png(root / "test/sad/PublicTest_5.png", image(3))
    save_png(root / "test/Surprise/PrivateTest_4.png", image(4))
    (root / "train/happy/readme.txt").write_text("not an image")
    data = load_dataset(root, verbose=False)
    # ids follow the sorted relative paths: test/Surprise, test/sad, train/angry, train/happy
    assert data.x[:, 0, 0].tolist() == [4, 3, 2, 1]
    assert data.y.tolist() == [5, 4, 0, 3]
    assert data.usage.tolist() == ["PrivateTest", "PublicTest", "Training", "Training"]
    assert any("skipped 1 non-image" in n for n in data.notes)
    assert data.fingerprint["files"] == 4 and len(data.fingerprint["sha256"]) == 64


def make_unprefixed(root: Path, per_class: int = 10) -> None:
    for c, name in enumerate(["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]):
        for i in range(per_class):
            save_png(root / "train" / name / f"img{i:02d}.png", image(c * 20 + i))
        save_png(root / "test" / name / "t.png", image(200 + c))


def test_folder_without_prefixes_carves_a_stratified_seeded_validation(tmp_path, capsys):
    root = tmp_path / "plain"
    make_unprefixed(root)
    data = load_dataset(root, val_fraction=0.2, seed=3)
    assert "validation carved from train/" in capsys.readouterr().err
    assert any("validation carved from train/: 14 of 70" in n for n in data.notes)
    assert np.bincount(data.val.y).tolist() == [2] * 7 and len(data.train) == 56 and len(data.test) == 7
    again = load_dataset(root, val_fraction=0.2, seed=3, cache=False, verbose=False)
    other = load_dataset(root, val_fraction=0.2, seed=4, cache=False, verbose=False)
    assert again.val.ids.tolist() == data.val.ids.tolist()
    assert other.val.ids.tolist() != data.val.ids.tolist()


def test_class_folders_directly_are_test_data_and_may_lack_classes(tmp_path):
    root = tmp_path / "ckplus"
    save_png(root / "Happy/S010_006.png", image(1))
    save_png(root / "sadness/S011_002.png", image(2))
    data = load_dataset(root, verbose=False)
    assert data.usage.tolist() == ["PrivateTest", "PrivateTest"] and data.y.tolist() == [3, 4]
    assert any("every image is test data" in n for n in data.notes)


def test_rgb_images_become_gray_and_resize_is_opt_in(tmp_path):
    root = tmp_path / "rgb"
    save_png(root / "happy/a.png", np.full((64, 64, 3), (100, 150, 200), dtype=np.uint8))
    with pytest.raises(DataError, match=r"a.png: image is 64x64, expected 48x48"):
        load_dataset(root, verbose=False)
    data = load_dataset(root, resize=True, verbose=False)
    gray = Image.new("RGB", (1, 1), (100, 150, 200)).convert("L").getpixel((0, 0))
    assert data.x.shape == (1, 48, 48) and np.all(data.x == gray)


def test_folder_with_no_images(tmp_path):
    (tmp_path / "void/train/happy").mkdir(parents=True)
    with pytest.raises(DataError, match=r"void: no images found"):
        load_dataset(tmp_path / "void", verbose=False)


def test_unreadable_image(tmp_path):
    save_png(tmp_path / "f/happy/ok.png", image(1))
    (tmp_path / "f/happy/broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"broken.jpg: unreadable image"):
        load_dataset(tmp_path / "f", verbose=False)


def test_image_of_the_wrong_size(tmp_path):
    save_png(tmp_path / "w/test/fear/PrivateTest_1.png", image(1, size=40))
    with pytest.raises(DataError, match=r"PrivateTest_1.png: image is 40x40, expected 48x48"):
        load_dataset(tmp_path / "w", verbose=False)


def test_unknown_class_folder(tmp_path):
    save_png(tmp_path / "k/contempt/a.png", image(1))
    with pytest.raises(DataError, match=r"contempt: unknown class folder 'contempt'"):
        load_dataset(tmp_path / "k", verbose=False)


# --------------------------------------------------------------------------- cache


def test_cache_round_trip_skips_parsing(fake_csv, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = load_dataset(fake_csv, cache_dir=str(cache_dir), verbose=False)
    files = list(cache_dir.glob("*.npz"))
    assert len(files) == 1 and not list(cache_dir.glob("*.tmp"))
    monkeypatch.setattr(data_load, "read_csv_dataset", no_parse)
    second = load_dataset(fake_csv, cache_dir=str(cache_dir), verbose=False)
    for name in ("x", "y", "usage", "ids"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
    assert second.fingerprint == first.fingerprint and second.notes == first.notes


def test_cache_is_refreshed_when_the_source_changes_with_the_same_size(tmp_path):
    path = write_rows(tmp_path / "s.csv", [f"1,{ZEROS},Training"])
    cache_dir = str(tmp_path / "cache")
    assert load_dataset(path, cache_dir=cache_dir, verbose=False).x[0, 0, 0] == 0
    old = path.stat()
    path.write_text(path.read_text().replace(",0 0", ",9 0", 1))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 10**9))
    assert path.stat().st_size == old.st_size
    assert load_dataset(path, cache_dir=cache_dir, verbose=False).x[0, 0, 0] == 9


def test_touched_but_unchanged_source_still_uses_the_cache(fake_csv, tmp_path, monkeypatch):
    cache_dir = str(tmp_path / "cache")
    load_dataset(fake_csv, cache_dir=cache_dir, verbose=False)
    os.utime(fake_csv, ns=(fake_csv.stat().st_atime_ns, fake_csv.stat().st_mtime_ns + 5 * 10**9))
    monkeypatch.setattr(data_load, "read_csv_dataset", no_parse)
    assert len(load_dataset(fake_csv, cache_dir=cache_dir, verbose=False)) == 84


def test_corrupt_cache_file_is_replaced(fake_csv, tmp_path):
    cache_dir = tmp_path / "cache"
    load_dataset(fake_csv, cache_dir=str(cache_dir), verbose=False)
    (cache_file,) = cache_dir.glob("*.npz")
    cache_file.write_bytes(b"garbage")
    assert len(load_dataset(fake_csv, cache_dir=str(cache_dir), verbose=False)) == 84
    assert cache_file.stat().st_size > 1000


def test_cache_goes_to_the_env_folder_and_is_keyed_by_options(tmp_path):
    root = tmp_path / "src"
    save_png(root / "happy/a.png", image(1, size=50))
    before = sorted(p.name for p in root.rglob("*"))
    load_dataset(root, resize=True, verbose=False)
    load_dataset(root, resize=True, seed=1, verbose=False)
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing written beside the source
    assert len(list(Path(os.environ["FER2013_CACHE"]).glob("*.npz"))) == 2


# --------------------------------------------------------------------------- API helpers


def test_resolve_data_path_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FER2013_DATA", raising=False)
    with pytest.raises(DataError) as err:
        resolve_data_path()
    assert all(part in str(err.value) for part in ("path argument", "FER2013_DATA", DEFAULT_DATA))
    (tmp_path / "data").mkdir()
    default = write_fake_csv(Path(DEFAULT_DATA))
    assert resolve_data_path() == default
    env = write_fake_csv(tmp_path / "env.csv")
    monkeypatch.setenv("FER2013_DATA", str(env))
    assert resolve_data_path() == env
    explicit = write_fake_csv(tmp_path / "explicit.csv")
    assert resolve_data_path(explicit) == explicit
    with pytest.raises(DataError, match="missing.csv"):
        resolve_data_path(tmp_path / "missing.csv")
    monkeypatch.setenv("FER2013_DATA", str(tmp_path / "gone.csv"))
    with pytest.raises(DataError, match="gone.csv"):
        resolve_data_path()


def test_subset_and_split_properties(fake_csv):
    data = load_dataset(fake_csv, verbose=False)
    picked = data.subset([3, 50, 80])
    assert picked.ids.tolist() == [3, 50, 80] and picked.usage.tolist() == ["Training", "PublicTest", "PrivateTest"]
    assert data.subset(data.y == 1).y.tolist() == [1] * 12
    assert set(data.val.usage.tolist()) == {"PublicTest"} and set(data.test.usage.tolist()) == {"PrivateTest"}
    with pytest.raises(ValueError, match="bool mask"):
        data.subset(np.ones(3, dtype=bool))


def test_limit_is_per_split_stratified_and_seeded(fake_csv):
    data = load_dataset(fake_csv, verbose=False)
    small = data.limit(14, seed=1)
    assert [len(small.train), len(small.val), len(small.test)] == [14, 14, 14]
    assert np.bincount(small.train.y).tolist() == [2] * 7 and np.bincount(small.val.y).tolist() == [2] * 7
    assert small.ids.tolist() == data.limit(14, seed=1).ids.tolist()
    assert small.ids.tolist() != data.limit(14, seed=2).ids.tolist()
    assert len(data.limit(100)) == 84 and np.all(np.diff(small.ids) > 0)
    rare = data.subset(np.r_[0:42]).limit(7)  # Training only: every class keeps one image
    assert np.bincount(rare.y).tolist() == [1] * 7
    with pytest.raises(ValueError, match="n=0"):
        data.limit(0)


def test_class_weights_are_balanced_over_present_classes():
    weights = class_weights(np.array([0, 0, 0, 6]))
    assert weights == pytest.approx({0: 4 / 6, 6: 2.0})
    assert all(type(k) is int and type(v) is float for k, v in weights.items())
    with pytest.raises(ValueError, match="0..6"):
        class_weights(np.array([0, 7]))


# --------------------------------------------------------------------------- describe and CLI


def test_describe_counts_duplicates_and_blanks_by_hand():
    a, b, c = image(1), image(2), image(3)
    blank = np.full((48, 48), 128, dtype=np.uint8)
    x = np.stack([a, a, b, b, c, blank, c])
    y = np.array([0, 1, 2, 2, 3, 4, 3])
    usage = np.array(["Training", "Training", "Training", "PublicTest", "PublicTest", "PrivateTest", "PublicTest"])
    info = describe_dataset(FERDataset(x, y, usage, np.arange(7), "hand"))
    assert info["duplicates"] == {
        "groups": 3, "rows": 6, "cross_usage_groups": 1, "PublicTest_with_training_copy": 1,
        "PrivateTest_with_training_copy": 0, "label_conflict_groups": 1,
    }
    assert info["blank"] == {"count": 1, "by_usage": {"Training": 0, "PublicTest": 0, "PrivateTest": 1}, "ids": [5]}
    assert info["counts"]["Training"] == [1, 1, 1, 0, 0, 0, 0]


def test_cli_describe_text_and_json(fake_csv, capsys):
    assert main(["describe", str(fake_csv), "-q"]) == 0
    out = capsys.readouterr().out
    assert "Training" in out and "Exact duplicates" in out and "Blank images" in out
    assert main(["describe", str(fake_csv), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["totals"] == {"Training": 42, "PublicTest": 21, "PrivateTest": 21}


def test_cli_reports_bad_input_without_traceback(tmp_path):
    bad = write_rows(tmp_path / "bad.csv", [f"0,{ZEROS},Nowhere"])
    proc = subprocess.run([sys.executable, "-m", "members.data", "describe", str(bad)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 1
    assert "bad.csv, line 2 (data row 1): unknown Usage 'Nowhere'" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


# --------------------------------------------------------------------------- the real file (skipped when absent)


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real_cache")


@pytest.fixture(scope="module")
def real(real_data_path, real_cache) -> FERDataset:
    return load_dataset(real_data_path, cache_dir=str(real_cache), verbose=False)


def test_real_counts(real):
    assert [len(real.train), len(real.val), len(real.test)] == [28709, 3589, 3589]
    assert np.bincount(real.train.y).tolist() == [3995, 436, 4097, 7215, 4830, 3171, 4965]


def test_real_duplicates_and_blanks(real):
    info = describe_dataset(real)
    assert info["duplicates"] == {
        "groups": 1516, "rows": 3369, "cross_usage_groups": 557, "PublicTest_with_training_copy": 280,
        "PrivateTest_with_training_copy": 288, "label_conflict_groups": 57,
    }
    assert info["blank"]["count"] == 12


def test_real_cache_round_trip_and_cli(real, real_data_path, real_cache, monkeypatch, capsys):
    monkeypatch.setattr(data_load, "read_csv_dataset", no_parse)
    again = load_dataset(real_data_path, cache_dir=str(real_cache), verbose=False)
    np.testing.assert_array_equal(again.x, real.x)
    np.testing.assert_array_equal(again.usage, real.usage)
    monkeypatch.setenv("FER2013_CACHE", str(real_cache))
    assert main(["describe", str(real_data_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "Training" in out and "28709" in out and "3589" in out
    assert "3995       436   4097    7215   4830       3171      4965   28709" in out
