"""What the CPU decides: the reduced-precision warning, the CPU features in run.json, oneDNN kernels on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ensemble import provenance
from members.core import hardware
from members import train

REPO_ROOT = Path(__file__).resolve().parents[1]
X86 = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 {extra}\n\nprocessor\t: 1\nflags\t: fpu\n"


def test_cpu_features_reads_the_first_cpus_flags_and_none_when_unreadable(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(X86.format(extra="amx_bf16 amx_tile"))
    assert provenance.cpu_features(info) == {"fpu", "sse2", "avx2", "amx_bf16", "amx_tile"}
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")  # ARM's spelling
    assert provenance.cpu_features(info) == {"fp", "asimd", "bf16"}
    info.write_text("processor\t: 0\n")
    assert provenance.cpu_features(info) is None
    assert provenance.cpu_features(tmp_path / "absent") is None


@pytest.mark.parametrize("precision, features, accelerator, warns", [
    ("mixed_bfloat16", {"avx2"}, False, True),
    ("mixed_bfloat16", {"avx2", "avx512_bf16"}, False, False),
    ("mixed_bfloat16", {"amx_bf16"}, False, False),
    ("mixed_bfloat16", {"fp", "asimd", "bf16"}, False, False),  # ARM with BF16
    ("mixed_bfloat16", {"fp", "asimd"}, False, True),
    ("mixed_bfloat16", {"avx2"}, True, False),  # a GPU computes it
    ("mixed_bfloat16", None, False, False),  # unknown CPU: say nothing
    ("mixed_float16", {"avx2", "amx_bf16"}, False, True),  # bfloat16 units do not compute float16
    ("mixed_float16", {"avx512_fp16"}, False, False),
    ("float32", {"avx2"}, False, False),
])
def test_slow_precision_warning_only_when_the_policy_is_emulated(precision, features, accelerator, warns):
    message = hardware.slow_precision_warning(precision, features, accelerator)
    assert (message is not None) == warns
    if warns:
        assert precision in message and all(f in message for f in hardware.NATIVE_CPU_FEATURES[precision])
        assert "--precision float32" in message


def test_train_warns_before_an_emulated_bfloat16_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_features", lambda path=None: {"avx2"})
    monkeypatch.setattr(hardware, "has_accelerator", lambda: False)
    argv = ["baseline", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path)]
    assert train.main([*argv, "--precision", "mixed_bfloat16"]) == 2  # then the missing data stops it
    err = capsys.readouterr().err
    assert "warning: --precision mixed_bfloat16: this CPU has none of amx_bf16, avx512_bf16" in err
    assert "nope.csv" in err
    assert train.main(argv) == 2
    assert "warning" not in capsys.readouterr().err  # float32: nothing to say


def test_machine_info_records_the_speed_features_of_the_cpu(monkeypatch):
    monkeypatch.setattr(provenance, "cpu_features", lambda path=None: {"sse2", "avx2", "amx_bf16", "amx_tile"})
    assert provenance.machine_info()["cpu_features"] == ["amx_bf16", "amx_tile", "avx2"]  # sorted, sse2 dropped
    monkeypatch.setattr(provenance, "cpu_features", lambda path=None: None)
    assert provenance.machine_info()["cpu_features"] is None


def _import_members(env_value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # TensorFlow then says whether its oneDNN kernels are on
    code = "import os, members, tensorflow; print('opts=' + os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=REPO_ROOT)


def test_members_turns_tensorflows_onednn_kernels_on_unless_the_user_chose():
    pytest.importorskip("tensorflow")
    default = _import_members(None)
    assert default.returncode == 0, default.stderr[-2000:]
    assert "opts=1" in default.stdout and "oneDNN custom operations are on" in default.stderr
    chosen = _import_members("0")
    assert chosen.returncode == 0, chosen.stderr[-2000:]
    assert "opts=0" in chosen.stdout and "oneDNN custom operations are on" not in chosen.stderr
