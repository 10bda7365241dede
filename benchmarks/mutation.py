"""Mutation testing of the core modules with mutmut: does the suite notice when the code is wrong?

    .venv/bin/python benchmarks/mutation.py                       # all five modules (hours on 2 cores)
    .venv/bin/python benchmarks/mutation.py --modules losses gap  # some of them
    .venv/bin/python benchmarks/mutation.py --report-only         # rewrite the results from the last run

mutmut (pinned below, installed into this environment when missing; not part of the test extra)
rewrites one expression at a time in ``gapkit/losses.py``, ``mixture.py``, ``gap.py``, ``training.py``
and ``methods/adaptive.py`` and, for each mutant, runs those tests of the module's test files
(:data:`MODULES`: the files that test it, fast ones first) that execute the mutated function. A mutant is
*killed* when a test fails, *survives* when every test passes. The score is killed / (killed + survived +
timeout): timeouts count against it, as a mutant that makes training loop forever is still noticed only
by the clock.

Each module runs in its own copy of the tree (``--workdir``/<module>, by default in the temporary folder)
so that the checkout is never touched, one torch thread per mutant, ``--children`` mutants at a time.
Results: ``benchmarks/results/mutation.json`` (counts per module, every surviving mutant's diff) and
``mutation.md`` (the same as a table, with an explanation for each survivor from :data:`EXPLAINED` where
one is recorded). Not run in CI: it is slow.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

MUTMUT = "mutmut==3.8.1"
#: module -> (its file, the test files whose tests may run for its mutants)
MODULES = {
    "losses": ("gapkit/losses.py", ["tests/test_equations.py", "tests/test_training_observed.py"]),
    "gap": ("gapkit/gap.py", ["tests/test_equations.py", "tests/test_training_observed.py",
                              "tests/test_readings.py"]),
    "mixture": ("gapkit/mixture.py", ["tests/test_mixture.py", "tests/test_equations.py",
                                      "tests/test_device_steps.py", "tests/test_readings.py"]),
    "adaptive": ("gapkit/methods/adaptive.py", ["tests/test_equations.py", "tests/test_training_observed.py",
                                                "tests/test_training.py", "tests/test_readings.py"]),
    "training": ("gapkit/training.py", ["tests/test_training.py", "tests/test_training_observed.py",
                                        "tests/test_device_steps.py"]),
}


#: why a surviving mutant is not a missing test: equivalent code, or behaviour the CPU suite cannot see
_CPU_ONLY = ("Equivalent on the CPU, where .to(None) and .to(device) leave a tensor where it is; on a GPU the "
             "posteriors would meet CPU parameters and fail at the first adaptive batch, which no CPU test can "
             "see (benchmarks/bench_gpu.py's adaptive run would).")
_INITIAL = ("Equivalent: the attribute's value before a fit is never read (fit and from_dict set it, and every "
            "reader first checks that the mixture is fitted).")
_CONSTANT = ("Equivalent: the mutated constant (2 / pi or 3 pi for 2 pi) multiplies both components' densities alike, "
             "so it cancels in Eq. 9's normalisation.")
_NO_DEFAULT = "Equivalent: bool(None) is False, the default it replaces."
_ARGSORT = "Equivalent: every numpy sort orders two elements alike, ties included (insertion sort below 16)."
EXPLAINED: dict[str, str] = {
    "gapkit.losses.x_control_weights__mutmut_11": "Equivalent: |g| times a non-negative scale is never below 0, "
    "so the lower clamp never acts.",
    "gapkit.losses.x_control_weights__mutmut_24": "Equivalent: torch indexes a tensor on any device with a CPU "
    "permutation; .to(g.device) only moves the index first.",
    "gapkit.mixture.xǁGapMixtureǁfit__mutmut_27": "Equivalent but for a fitted weight exactly equal to min_weight "
    "(1e-3), which EM on real gaps does not produce.",
    "gapkit.mixture.xǁGapMixtureǁfit__mutmut_34": _ARGSORT,
    "gapkit.mixture.xǁGapMixtureǁfit__mutmut_36": _ARGSORT,
    "gapkit.mixture.xǁGapMixtureǁfit__mutmut_39": _ARGSORT + " numpy accepts \"STABLE\" for \"stable\".",
    **{f"gapkit.mixture.xǁGapMixtureǁ__init____mutmut_{i}": _INITIAL for i in range(12, 21)},
    "gapkit.mixture.xǁGapMixtureǁposteriors__mutmut_16": _CPU_ONLY,
    "gapkit.mixture.xǁGapMixtureǁposteriors__mutmut_28": _CONSTANT,
    "gapkit.mixture.xǁGapMixtureǁposteriors__mutmut_29": _CONSTANT,
    "gapkit.mixture.xǁGapMixtureǁ_device_parameters__mutmut_2": "Equivalent on one device: the cache key loses the "
    "device, so a mixture used on two devices in turn would return the first device's copy (the CPU suite uses "
    "one).",
    "gapkit.mixture.xǁGapMixtureǁ_device_parameters__mutmut_12": _CPU_ONLY,
    "gapkit.mixture.xǁGapMixtureǁ_device_parameters__mutmut_14": "Equivalent: torch.as_tensor keeps a float64 "
    "numpy array's dtype.",
    "gapkit.mixture.xǁGapMixtureǁ_device_parameters__mutmut_16": "Equivalent: torch.as_tensor keeps a float64 "
    "numpy array's dtype.",
    "gapkit.mixture.xǁGapMixtureǁfrom_dict__mutmut_36": _NO_DEFAULT,
    "gapkit.mixture.xǁGapMixtureǁfrom_dict__mutmut_38": _NO_DEFAULT,
    "gapkit.mixture.xǁGapMixtureǁposteriors__mutmut_4": "Equivalent: float32 gaps minus the float64 parameters "
    "are promoted to float64 by torch, so Eq. 9 is still evaluated in float64 (test_float32_gaps_are_fitted_"
    "and_weighted_in_float64 checks the value).",
    "gapkit.training.xǁTrainerǁ_fit_mixture__mutmut_3": "Equivalent in value: the gaps are float32 already "
    "(Eq. 6 is computed in float32), so astype(None) only keeps them as float64.",
    "gapkit.training.xǁTrainerǁ_fit_mixture__mutmut_12": "Only a distributed run takes this path; "
    "tests/test_distributed.py (torchrun, two processes) runs it, outside this module's test selection.",
    **{f"gapkit.training.xǁTrainerǁ_write_outputs__mutmut_{i}": "Equivalent: the JSON's indentation; every reader "
       "parses it." for i in (23, 25, 26)},
    "gapkit.methods.adaptive.x_held_out_clips__mutmut_5": "Equivalent: SeedSequence.spawn(2)[0] is the same child "
    "stream as spawn(1)[0] (children are numbered from 0).",
    **{f"gapkit.methods.adaptive.xǁAdaptiveǁtraining_clips__mutmut_{i}": "Equivalent: a mask of float ones with "
       "the held-out clips set to 0 has the same nonzero indices as the boolean mask." for i in (12, 14)},
    "gapkit.methods.adaptive.xǁAdaptiveǁfit_mixture__mutmut_13": "Equivalent: the base method's fit ignores the "
    "previous fit (only track_components, called after it with the real one, reads it).",
    "gapkit.methods.adaptive.xǁAdaptiveǁposteriors__mutmut_7": "Equivalent: the batch's indices and the collected "
    "gaps are on the same device, so .to(device) is a no-op there too (as the line's comment says).",
}


def ensure_mutmut() -> None:
    if importlib.util.find_spec("mutmut") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", MUTMUT], check=True)


def prepare(workdir: Path, module: str) -> None:
    """A copy of the package and the tests, with mutmut's configuration for one module in setup.cfg."""
    path, tests = MODULES[module]
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("gapkit", "tests"):
        target = workdir / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", workdir / "pyproject.toml")
    lines = ["[mutmut]", "source_paths = gapkit/", "only_mutate =", f"    {path}",
             "pytest_add_cli_args_test_selection =", *[f"    {t}" for t in tests],
             "pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -q",
             "process_isolation = forkserver", "use_git_change_detection = false", ""]
    (workdir / "setup.cfg").write_text("\n".join(lines))


def run(workdir: Path, module: str, env: dict, children: int) -> float:
    """mutmut over one module's mutants, ``children`` at a time; returns the seconds it took."""
    pattern = MODULES[module][0][:-3].replace("/", ".") + ".*"
    t0 = time.perf_counter()
    print(f"mutmut run {pattern}", flush=True)
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children), pattern], cwd=workdir,
                   env=env, check=False)
    seconds = time.perf_counter() - t0
    print(f"  {module}: {seconds:.0f} s", flush=True)
    return seconds


def collect(workdir: Path, module: str, env: dict) -> dict | None:
    """Every mutant's status from mutmut's meta file of one module, and the diff of each survivor;
    None when the module has not been run."""
    path, tests = MODULES[module]
    meta = workdir / "mutants" / (path + ".meta")
    if not meta.exists():
        return None
    from mutmut.stats import status_by_exit_code

    codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
    tested = {k: v for k, v in codes.items() if v is not None}
    if not tested:
        return None
    entry = {"file": path, "tests": tests, "mutants": len(codes), "untested": len(codes) - len(tested),
             "counts": {}, "survivors": []}
    for key, code in sorted(tested.items()):
        status = status_by_exit_code[code]
        entry["counts"][status] = entry["counts"].get(status, 0) + 1
        if status in ("survived", "timeout", "no tests"):
            diff = subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=workdir, env=env,
                                  capture_output=True, text=True).stdout
            entry["survivors"].append({"mutant": key, "status": status, "diff": diff.strip(),
                                       "explanation": EXPLAINED.get(key)})
    c = entry["counts"]
    decided = c.get("killed", 0) + c.get("survived", 0) + c.get("timeout", 0)
    entry["score"] = round(c.get("killed", 0) / decided, 4) if decided else None
    return entry


def write(results: dict, out_dir: Path, seconds: dict[str, int]) -> None:
    """mutation.json and mutation.md from each module's results and the seconds each module's last run took."""
    from _bench_common import machine, write_atomic

    payload = {"tool": MUTMUT, "modules": results, "machine": machine(), "seconds": seconds}
    write_atomic(json.dumps(payload, indent=1), out_dir / "mutation.json")
    lines = ["# Mutation testing of the core modules", "",
             f"{MUTMUT}. Score = killed / (killed + survived + timeout), over the mutants tested so far (a run "
             "stopped early leaves the rest untested; rerunning continues). Each module's mutants run the tests "
             "of its test files that execute the mutated function.", "",
             "| module | test files | mutants tested (of all) | killed | survived | timeout | no tests | score |",
             "| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m, e in results.items():
        c = e["counts"]
        score = "" if e["score"] is None else f"{100 * e['score']:.1f}%"
        tests = ", ".join(t.removeprefix("tests/") for t in e["tests"])
        lines.append(f"| {e['file']} | {tests} | {sum(c.values())} of {e['mutants']} | {c.get('killed', 0)} | {c.get('survived', 0)} | "
                     f"{c.get('timeout', 0)} | {c.get('no tests', 0)} | {score} |")
    for m, e in results.items():
        if not e["survivors"]:
            continue
        lines += ["", f"## Survivors in {e['file']}", ""]
        for s in e["survivors"]:
            lines += [f"### {s['mutant']} ({s['status']})", "",
                      f"{s['explanation'] or 'Not yet explained.'}", "", "```diff", s["diff"], "```", ""]
    write_atomic("\n".join(lines) + "\n", out_dir / "mutation.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=list(MODULES))
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "gapkit-mutation")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--children", type=int, default=1, help="mutants tested at once (one torch thread each)")
    parser.add_argument("--report-only", action="store_true", help="only collect the last run's results")
    args = parser.parse_args()
    ensure_mutmut()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    previous = args.out / "mutation.json"
    seconds = json.loads(previous.read_text()).get("seconds") if previous.exists() else None
    seconds = seconds if isinstance(seconds, dict) else {}  # a module's time stays until it runs again
    if not args.report_only:
        for m in args.modules:
            prepare(args.workdir / m, m)
            seconds[m] = round(run(args.workdir / m, m, env, args.children))
    results = {m: e for m in MODULES if (e := collect(args.workdir / m, m, env)) is not None}
    write(results, args.out, {m: s for m, s in seconds.items() if m in results})
    for m, e in results.items():
        print(f"{e['file']}: {e['counts']} score {e['score']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
