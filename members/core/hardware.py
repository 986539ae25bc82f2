"""Whether this machine runs a reduced-precision dtype policy natively, or emulates it slowly.

Keras's ``mixed_bfloat16`` and ``mixed_float16`` policies speed a convolution network up only where the
hardware computes in those types: a GPU, or a CPU with the matrix or vector units for them (AMX on
Intel, AVX512-BF16 on Intel and AMD Zen 4, or ARM's BF16 for bfloat16; AMX-FP16, AVX512-FP16 or ARM's
half-precision SIMD for float16). Elsewhere each layer computes in float32 with conversions around it. Measured here on
2026-12-03 (``benchmarks/bench_member_cost.py --precision float32,mixed_bfloat16`` on an AMD EPYC
with AVX2 only): ``mixed_bfloat16`` made a training step 2x slower for the baseline, 12x for
``cnn8`` and 14x for ``model2`` (6x and 9x for the first two with oneDNN's kernels on); on an Intel
Xeon with AMX the same policy made them up to 3.3x faster, and on a Zen 4 EPYC with AVX512-BF16 and
no AMX (2026-12-05) 1.0x to 2.9x for ``cnn8`` and 1.5x to 1.7x for ``model2``. ``members.train``
warns before an emulated run.

The CPU's features are read from ``/proc/cpuinfo`` (Linux, ``ensemble.provenance.cpu_features``);
elsewhere they are unknown and nothing is said.
"""

from __future__ import annotations

import sys

from ensemble.provenance import cpu_features

# Any one of these CPU features computes the policy's type natively (x86 flags, then ARM's).
NATIVE_CPU_FEATURES = {
    "mixed_bfloat16": ("amx_bf16", "avx512_bf16", "bf16"),
    "mixed_float16": ("amx_fp16", "avx512_fp16", "asimdhp"),
}


def native_units(precision: str, features: set[str] | None) -> list[str] | None:
    """Which of ``precision``'s native features the CPU has (``[]``: the policy is emulated).

    None when the CPU's features are unknown or ``precision`` needs no units (float32).
    """
    wanted = NATIVE_CPU_FEATURES.get(precision)
    return None if wanted is None or features is None else sorted(features & set(wanted))


def has_accelerator() -> bool:
    """Whether the active Keras backend sees a GPU (or another accelerator) to train on."""
    from members.core import backend

    name = backend.name()
    if name == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if name == "jax":
        import jax

        return any(d.platform != "cpu" for d in jax.devices())
    if name == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def slow_precision_warning(precision: str, features: set[str] | None, accelerator: bool) -> str | None:
    """A warning when ``precision`` would be emulated on this CPU, else None.

    Args:
        precision: a Keras dtype policy name (``float32`` never warns).
        features: the CPU's feature flags (``cpu_features``); None: unknown, no warning.
        accelerator: a GPU will run the model (no warning: GPUs compute both types).
    """
    if accelerator or native_units(precision, features) != []:
        return None
    return (f"--precision {precision}: this CPU has none of {', '.join(NATIVE_CPU_FEATURES[precision])} and no GPU is visible, so every "
            f"layer is computed in float32 with conversions around it (measured on an AVX2-only AMD EPYC: "
            f"mixed_bfloat16 training steps 2x to 14x slower than float32). Use --precision float32 unless the run "
            f"must match one started on another machine.")


def is_emulated(precision: str) -> bool:
    """Whether ``precision`` would be emulated here: a CPU known to lack its units, and no GPU.

    The backend is asked for devices only when the CPU lacks the units (float32, an unknown CPU or
    native units answer False at once).
    """
    return native_units(precision, cpu_features()) == [] and not has_accelerator()


def warn_if_emulated(precision: str) -> str | None:
    """Print ``slow_precision_warning`` for this machine to stderr (and return it) when there is one."""
    if not is_emulated(precision):
        return None
    message = slow_precision_warning(precision, cpu_features(), accelerator=False)
    print(f"warning: {message}", file=sys.stderr, flush=True)
    return message
