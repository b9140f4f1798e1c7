"""Per-run settings chosen for the machine: precision, threads, denormal floats.

Precision. bf16 is a lever on some CPUs and a trap on others: with AMX (Sapphire Rapids) a bf16
matrix multiply ran ~3.5x fp32, with AVX-512 BF16 (Zen 4) ~2x, but on an AVX2-only EPYC it is
emulated and a 2048^2 multiply ran 400x slower than fp32. Where the CPU lists bf16 instructions
(/proc/cpuinfo's amx_bf16 or avx512_bf16: ``bf16_class``) bf16 is native, decided from the flags
and never from a timing (a probe beside other work measured 1 GFLOP/s, and once bf16 below fp32,
on a CPU whose bf16 runs 2.8x fp32). Where it lists none, ``resolve_precision`` measures: a
128x256x256 multiply in both dtypes (a few milliseconds; the bf16 side is cut short when it is
slow); ``bf16`` is refused, before anything is written, where bf16 runs under 0.75x the fp32 rate
(a run would take up to twice as long, or hours) and ``auto`` picks it only at 1.3x or more. Then,
for the run's kind (``resolve_kind_precision``), ``auto`` takes bf16 only where that kind's
training step was measured at least ``BF16_AUTO_SPEEDUP`` times faster in bf16 on the CPU's
class of bf16 hardware with its test metrics checked against fp32's (a kind without a bf16 path,
or unchecked there, trains fp32), and ``bf16`` is refused for a kind whose step has no bf16 path
(it would train fp32 and record bf16). On CUDA, bf16 needs
``torch.cuda.is_bf16_supported()`` and ``auto`` takes it there.

Threads. ``threads=0`` (the default) takes one thread per core of the machine, never its load
(the thread count changes a run's numbers); ``-1`` (``--threads auto``) one per core that other
work leaves free, measured when the run starts; see ``choose_threads``.

Compiled steps (``compile``: off, on, auto). ``on`` compiles the learner's step with
torch.compile (Inductor): forward and backward as one graph per batch shape, random numbers drawn
by torch's own generator as in eager mode (so a compiled run draws the numbers an eager run
draws, and its weights differ only by the rounding of fused kernels). The compiled kernels are
cached on disk (``compile_cache``) and a second run loads them. Where the CPU side has no C++
compiler, ``on`` says so and the run is eager. ``auto`` compiles where it was measured to pay: a
kind whose compiled step measured at least ``COMPILE_AUTO_SPEEDUP`` times eager's speed on the
device type (the learner's ``compile_speedup``, from benchmarks/), in a run of at least
``COMPILE_AUTO_STEPS`` steps (a cold compile took 3-80 s) that does not stop early at a bar
(the learner's ``stops_early``). On a Zen 5 EPYC (AVX-512) the Dreamer agent's gradient step
compiled ran 1.58x eager (its many small operations fused) and Bayes by backprop's 1.22x; the
VAE's 1.04x (its fp32 step is 63% matrix multiplies, which compiling leaves as they are), the
diffusion U-Net's 0.80x and the skills update's 0.71x did not pay, so ``auto`` is off there,
and says why. The choice is
made from the run's length, the kind and the machine's compiler, never from timings, so the same
command gives the same numbers.

Denormals are flushed for the run's duration (restored afterwards, never at import): Adam's
moment estimates decay into the denormal range and slowed epochs from 9 s to 13 s on one
machine (Fashion-MNIST), not on another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "COMPILES",
    "CpuInfo",
    "PrecisionError",
    "RunSettings",
    "bf16_class",
    "bf16_is_native",
    "check_device",
    "choose_threads",
    "compile_cache",
    "compiler_problem",
    "cpu_info",
    "describe_machine",
    "matmul_rates",
    "resolve_compile",
    "resolve_kind_precision",
    "resolve_precision",
    "resolve_settings",
    "run_settings",
]

PRECISIONS = ("fp32", "bf16", "auto")
BF16_MIN_RATIO = 0.75  # below this, a bf16 run could take twice the fp32 time: refused
BF16_AUTO_RATIO = 1.3  # auto takes bf16 only where it is clearly faster
BF16_AUTO_SPEEDUP = 1.1  # ... and for a kind whose bf16 step measured at least this much faster
COMPILES = ("off", "on", "auto")
COMPILE_AUTO_STEPS = 20_000  # auto compiles runs at least this long (see the module docstring)
COMPILE_AUTO_SPEEDUP = 1.1  # ... of a kind whose compiled step measured at least this much faster


class PrecisionError(ValueError):
    """bf16 asked for where this machine does not run it natively; names the CPU and the rates."""


@dataclass(frozen=True)
class CpuInfo:
    model: str
    capability: str  # torch's: DEFAULT, AVX2, AVX512, ...
    bf16_flags: tuple[str, ...]  # amx_bf16, avx512_bf16 where /proc/cpuinfo lists them
    cores: int  # usable by this process

    def __str__(self) -> str:
        flags = ", ".join(self.bf16_flags) or "none"
        return (f"{self.model} (torch capability {self.capability}; bf16 instructions: {flags}; "
                f"{self.cores} cores)")  # fmt: skip


def cpu_info() -> CpuInfo:
    """The CPU's model name, torch's capability, its bf16 instruction flags and usable cores."""
    model, flags = None, set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:  # the first CPU's
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    model = model or platform.processor() or platform.machine()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    bf16 = tuple(f for f in ("amx_bf16", "avx512_bf16") if f in flags)
    return CpuInfo(model, torch.backends.cpu.get_cpu_capability(), bf16, cores)


def check_device_name(device: str) -> None:
    """ConfigError unless ``device`` names a torch device type elbokit runs on (whether this
    machine has it is checked when a run starts, so a saved run still opens elsewhere)."""
    from elbokit.config import ConfigError

    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda"):
        raise ConfigError(
            f"device = {device!r}: expected cpu, cuda or cuda:N", field="device", value=device,
            detail="expected cpu, cuda or cuda:N",
        )  # fmt: skip


def check_device(device: str) -> None:
    """Fail before anything is written when the device does not exist on this machine."""
    from elbokit.config import ConfigError

    check_device_name(device)
    d = torch.device(device)
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device = {device!r}: this machine has no CUDA GPU (use --device cpu)"
            )
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device = {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )


@dataclass(frozen=True)
class RunSettings:
    """A run's device, precision and thread count as resolved once for this machine, with a line
    saying why (the banner's)."""

    device: torch.device
    precision: str
    threads: int
    why: str
    precision_why: str = ""
    threads_why: str = ""


def resolve_settings(device: str, precision: str, threads: int) -> RunSettings:
    """The device checked, the precision and the thread count chosen (``resolve_precision``,
    ``choose_threads``): done once per run, by whoever starts it.

    Raises:
        ConfigError: a device this machine does not have.
        PrecisionError: bf16 where it is not native.
    """
    check_device(device)
    chosen, precision_why = resolve_precision(precision, device)
    count, threads_why = choose_threads(threads)
    return RunSettings(torch.device(device), chosen, count,
                       f"precision {precision_why}; threads {threads_why}", precision_why,
                       threads_why)  # fmt: skip


def bf16_class(device: str | torch.device = "cpu") -> str | None:
    """The class of bf16 hardware a kind's measured bf16 speedup is keyed by: "cuda"; on a CPU
    "amx" (AMX tiles: Sapphire Rapids and later), "avx512_bf16" (AVX-512 BF16 dot products:
    Zen 4, Zen 5, Cooper Lake), or None (no bf16 instructions: emulated)."""
    if torch.device(device).type == "cuda":
        return "cuda"
    flags = cpu_info().bf16_flags
    return "amx" if "amx_bf16" in flags else ("avx512_bf16" if "avx512_bf16" in flags else None)


def resolve_kind_precision(
    requested: str, settings: RunSettings, speedup: dict[str, float] | None, kind: str = "this"
) -> RunSettings:
    """``settings`` with the precision decided for the run's ``kind``. ``auto``: bf16 only where
    the machine runs it natively (``resolve_precision``: its bf16 instructions, or a probe) and
    this kind's training step was measured at least ``BF16_AUTO_SPEEDUP`` times faster in bf16
    on this class of bf16 hardware, its test metrics checked against fp32's (``speedup``, the
    learner's ``bf16_speedup``, keyed by ``bf16_class``; benchmarks/precision_bench.py), else
    fp32, saying why; the choice is made from the kind and the CPU's instructions, not from
    timings of the run. ``bf16`` for a kind whose step has no bf16 path (``speedup`` None) is
    refused: it would train fp32 and record bf16.

    Raises:
        PrecisionError: bf16 asked of a kind without a bf16 path.
    """
    if requested == "bf16" and speedup is None:
        raise PrecisionError(
            f"--precision bf16: the {kind} kind's step has no bf16 path (nothing in it runs under "
            "autocast), so it would train in fp32 and record bf16; use --precision fp32 (or auto)"
        )
    if requested != "auto" or settings.precision != "bf16":
        return settings
    cls = bf16_class(settings.device) or "this kind of"
    ratio = (speedup or {}).get(cls)
    probe = settings.precision_why.removeprefix("bf16 (auto: ").removesuffix(")")  # its reason
    if speedup is None:
        choice, why = "fp32", "fp32 (auto: this kind's step has no bf16 path)"
    elif ratio is None:
        choice, why = "fp32", (f"fp32 (auto: bf16 training of this kind is not yet checked on "
                               f"{cls} CPUs, for speed and for its test metrics against fp32's; "
                               f"{probe})")  # fmt: skip
    elif ratio < BF16_AUTO_SPEEDUP:
        choice, why = "fp32", (f"fp32 (auto: this kind's bf16 step measured {ratio:.2f}x fp32's "
                               f"speed on {cls}, under the {BF16_AUTO_SPEEDUP}x auto asks for; "
                               f"{probe})")  # fmt: skip
    else:
        choice, why = "bf16", (f"bf16 (auto: this kind's bf16 step measured {ratio:.2f}x fp32's "
                               f"speed on {cls}; {probe})")  # fmt: skip
    return dataclasses.replace(settings, precision=choice, precision_why=why,
                               why=f"precision {why}; threads {settings.threads_why}")  # fmt: skip


def describe_machine() -> str:
    """One line for every benchmark's header: the CPU (model, capability, bf16 instructions),
    torch's version and threads, and the OpenMP wait policy."""
    return (
        f"CPU {cpu_info()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )


def bf16_is_native(rates: dict[str, float] | None = None) -> bool:
    """Whether bf16 runs natively here: the CPU has bf16 instructions (``bf16_class``), or,
    where it lists none, bf16 matrix multiplies measured at least ``BF16_MIN_RATIO`` of fp32
    (``rates``, measured when not given)."""
    if rates is None and bf16_class() is not None:
        return True
    rates = rates or matmul_rates()
    return rates["bf16"] >= BF16_MIN_RATIO * rates["fp32"]


def matmul_rates(
    n: int = 128, k: int = 256, m: int = 256, budget: float = 0.02
) -> dict[str, float]:
    """GFLOP/s of an (n, k) @ (k, m) multiply in fp32 and bf16 on the CPU, each timed for about
    ``budget`` seconds after one warm-up (a slow bf16 stops after its first timed multiply)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, k, generator=g), torch.randn(k, m, generator=g)
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x, y = a.to(dtype), b.to(dtype)
        x @ y
        reps, t0 = 0, time.perf_counter()
        while True:
            x @ y
            reps += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= budget:
                break
        rates[name] = 2 * n * k * m * reps / elapsed / 1e9
    return rates


def resolve_precision(requested: str, device: str | torch.device = "cpu") -> tuple[str, str]:
    """(the precision to use, a line saying why) for ``fp32``, ``bf16`` or ``auto``.

    Raises:
        PrecisionError: bf16 on a device that does not run it natively (the message names the
            CPU and the measured rates).
        ValueError: an unknown precision.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision = {requested!r}: expected one of {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return "fp32", "fp32"
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if requested == "bf16" and not ok:
            raise PrecisionError(f"--precision bf16: {device} does not support bf16")
        return ("bf16" if ok else "fp32"), f"{'bf16' if ok else 'fp32'} ({requested} on {device})"
    if device.type != "cpu":
        return (
            ("fp32", f"fp32 ({requested} is measured on cpu and cuda only)")
            if requested == "auto"
            else ("bf16", "bf16")
        )
    cls = bf16_class(device)
    if cls is not None:  # bf16 instructions: native, whatever else runs on the machine now
        return "bf16", f"bf16 ({requested}: this CPU has {cls} instructions; {cpu_info()})"
    rates = matmul_rates()  # no bf16 flags: measured (emulated on x86: hundreds of times slower)
    ratio = rates["bf16"] / rates["fp32"]
    measured = (
        f"bf16 matmul {rates['bf16']:.1f} GFLOP/s against fp32 {rates['fp32']:.1f} "
        f"({ratio:.2f}x) on {cpu_info()}"
    )
    if requested == "bf16":
        if not bf16_is_native(rates):
            raise PrecisionError(
                f"--precision bf16: this CPU does not run bf16 natively: {measured}; a bf16 run "
                f"would be slower than fp32, up to hundreds of times. Use --precision fp32 "
                f"(or auto, which picks bf16 only where it is faster)"
            )
        return "bf16", f"bf16 ({measured})"
    choice = "bf16" if ratio >= BF16_AUTO_RATIO else "fp32"
    return choice, f"{choice} (auto: {measured})"


def _busy_cores(interval: float = 0.1) -> float:
    """How many cores other work kept busy over ``interval`` seconds (/proc/stat), or 0.0
    where that cannot be read."""

    def sample():
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values[:8]), idle

    try:
        t0, i0 = sample()
        time.sleep(interval)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = t1 - t0
    if total <= 0:
        return 0.0
    cpus = os.cpu_count() or 1
    return cpus * (1 - (i1 - i0) / total)


def choose_threads(requested: int) -> tuple[int, str]:
    """(threads, why). ``requested`` > 0: that many. 0 (the default): one per usable core of
    this machine (at most torch's count, shared among torchrun's processes on it), whatever its
    load, because the count changes the numbers (the main job's log p(x) moved by 0.3 nats
    between 1 and 2 threads); where other work keeps cores busy, ``why`` says that fewer would
    run faster. -1 (auto): the usable cores minus those other work keeps busy, measured over
    0.1 s at the start: OpenMP threads that share a core with other work spin-wait for each
    other, and beside a 2-thread matmul loop on 2 cores the main job ran 1.82 s/epoch with 2
    threads against 0.92 with 1 (AMD EPYC, AVX-512; 17x its idle time on an AVX2 EPYC;
    benchmarks/threads_under_load.py)."""
    current = torch.get_num_threads()
    if requested > 0:
        cores = cpu_info().cores
        more = (f"; more than this machine's {cores} cores: threads that share a core wait for "
                "each other, expect it to run slower") if requested > cores else ""  # fmt: skip
        return requested, f"{requested} (--threads){more}"
    cores = cpu_info().cores
    busy = _busy_cores()
    # under torchrun the processes on this machine share its cores
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    share = f", {local} processes" if local > 1 else ""
    machine = max(1, min(current, cores // local))
    free = max(1, min(machine, round(cores - busy)))
    if requested == -1:
        return free, f"{free} (auto: {cores} cores{share}, {busy:.1f} busy with other work)"
    hint = ""
    if free < machine:
        hint = (f"; other work keeps {busy:.1f} of {cores} cores busy: --threads {free} (or "
                "auto) would likely run faster here, with other numbers (measured 2x for the main "
                "job, 17x on an AVX2 EPYC, ~80x for a tiny model: threads that share a core wait "
                "for each other)")  # fmt: skip
    return machine, f"{machine} (one per core{share}){hint}"


def compiler_problem(device: str | torch.device = "cpu") -> str | None:
    """Why torch.compile cannot build kernels for ``device`` here, or None: Inductor's CPU
    kernels need a C++ compiler (g++ or clang++)."""
    if torch.device(device).type != "cpu":
        return None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"no C++ compiler for Inductor's CPU kernels ({first})"
    return None


_USER_CACHE = os.environ.get("TORCHINDUCTOR_CACHE_DIR")  # before Inductor sets its own default


def compile_cache() -> Path:
    """Where compiled kernels are kept between runs: $TORCHINDUCTOR_CACHE_DIR when set, else
    $XDG_CACHE_HOME/elbokit/inductor (~/.cache/elbokit/inductor, not Inductor's default in
    /tmp, which a reboot empties); set for Inductor here."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    given = _USER_CACHE or os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if given and given != default_cache_dir():  # set by the user, not Inductor's own default
        return Path(given)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "elbokit" / "inductor"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return path


def resolve_compile(
    requested: str,
    device: str | torch.device,
    steps: int,
    compilable: bool = True,
    speedup: dict[str, float] | None = None,
    stops_early: bool = False,
) -> tuple[str, str]:
    """("on" or "off", a line saying why) for ``compile`` = off, on or auto, a run of ``steps``
    steps and a learner that can (``compilable``) or cannot compile its step; ``speedup``: the
    learner's eager / compiled step time as measured per device type (benchmarks/), which
    ``auto`` needs above ``COMPILE_AUTO_SPEEDUP`` (unmeasured: off); ``stops_early``: the run
    ends once it reaches a bar, so ``steps`` is only its longest and ``auto`` stays off.

    Raises:
        ValueError: an unknown setting.
    """
    if requested not in COMPILES:
        raise ValueError(f"compile = {requested!r}: expected one of {', '.join(COMPILES)}")
    if requested == "off":
        return "off", "off"
    if not compilable:
        return "off", f"off ({requested} asked; this kind's step is not compiled yet)"
    kind = torch.device(device).type
    if requested == "auto":
        ratio = (speedup or {}).get(kind)
        if ratio is None:
            return "off", f"off (auto: compiling this kind's step is not measured on {kind})"
        if ratio < COMPILE_AUTO_SPEEDUP:
            return "off", (f"off (auto: this kind's compiled step measured {ratio:.2f}x eager's "
                           f"speed on {kind}, under the {COMPILE_AUTO_SPEEDUP}x auto asks for; "
                           "docs/benchmarks.md)")  # fmt: skip
        if steps < COMPILE_AUTO_STEPS:
            return "off", (f"off (auto: {steps:,} training steps, under the "
                           f"{COMPILE_AUTO_STEPS:,} that pay back a compile)")  # fmt: skip
        if stops_early:  # the Dreamer agent's CartPole run: 25,000 planned, ~1,250 taken
            return "off", (f"off (auto: this run stops at its bar, so its length is not known "
                           f"before it starts; the compiled step measured {ratio:.2f}x on "
                           f"{kind}, and --compile on compiles it for a long run)")  # fmt: skip
    problem = compiler_problem(device)
    if problem is not None:
        return "off", f"off ({requested} asked, but {problem}: the run is eager)"
    # the first steps compile: minutes for a large step the first time, seconds once cached
    where = f"the first steps compile, slower the first time; kernels kept in {compile_cache()}"
    if requested == "auto":
        return "on", (f"on (auto: {steps:,} training steps, the compiled step measured "
                      f"{speedup[kind]:.2f}x on {kind}; {where})")  # fmt: skip
    return "on", f"on ({where})"


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (/proc/meminfo's MemAvailable), or None
    where that cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


@contextlib.contextmanager
def run_settings(threads: int, flush_denormal: bool):
    """For the block: ``threads`` torch threads (0: as they are) and denormals flushed."""
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    flushed = flush_denormal and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if flushed:
            torch.set_flush_denormal(False)
        torch.set_num_threads(before)
