"""Mutation testing of the core modules with mutmut: does the suite notice when the code is wrong?

    .venv/bin/python benchmarks/mutation.py                       # all five modules (hours on 2 cores)
    .venv/bin/python benchmarks/mutation.py --modules losses gap  # some of them
    .venv/bin/python benchmarks/mutation.py --modules training --sample 150 --children 2   # a random sample
    .venv/bin/python benchmarks/mutation.py --modules training --survivors   # the survivors again, after new tests
    .venv/bin/python benchmarks/mutation.py --report-only         # rewrite the results from the last run

mutmut (pinned below, installed into this environment when missing; not part of the test extra)
rewrites one expression at a time in ``gapkit/losses.py``, ``mixture.py``, ``gap.py``, ``training.py``
and ``methods/adaptive.py`` and, for each mutant, runs those tests of the module's test files
(:data:`MODULES`: the files that test it, fast ones first) that execute the mutated function. A mutant is
*killed* when a test fails, *survives* when every test passes. The score is killed / (killed + survived +
timeout): timeouts count against it, as a mutant that makes training loop forever is still noticed only
by the clock.

``--sample N`` tests a random sample of N of a module's mutants (drawn with ``--sample-seed`` from all of
them, those tested before included, so that the sample's score estimates the module's; reported with its
95% Wilson interval), for a module too slow to test whole on 2 cores: ``training.py``'s mutants each run
up to a minute of training tests. The sample is kept in the module's workdir (``sample.json``).

Tests that run the module in other processes (:data:`OUT_OF_PROCESS`: the two-process torchrun test) are out of
mutmut's sight; they run once more against each survivor, and a survivor they kill counts as killed (listed as
such in the results).

Each module runs in its own copy of the tree (``--workdir``/<module>, by default in the temporary folder)
so that the checkout is never touched, one torch thread per mutant, ``--children`` mutants at a time.
mutmut keeps its results there and discards them when its configuration changes (a module's test files in
:data:`MODULES`); after a change to the code under test, delete the workdir to start over.
Results: ``benchmarks/results/mutation.json`` (counts per module, every surviving mutant's diff) and
``mutation.md`` (the same as a table, with an explanation for each survivor from :data:`EXPLAINED` where
one is recorded). Not run in CI: it is slow.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
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
                                        "tests/test_device_steps.py", "tests/test_precision.py"]),
}

#: module -> test files whose tests run the module in other processes (torchrun), where mutmut's trace of which
#: test runs which function cannot follow: they run once more for each mutant that survives the traced tests, with
#: the mutant switched on for the child processes too (mutmut's MUTANT_UNDER_TEST is inherited)
OUT_OF_PROCESS = {"training": ["tests/test_distributed.py"]}


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
    **{f"gapkit.training.xǁTrainerǁ_write_outputs__mutmut_{i}": "Equivalent: the JSON's indentation; every reader "
       "parses it." for i in (23, 25, 26)},
    **{f"gapkit.training.xǁTrainerǁ__init____mutmut_{i}": "Only a CUDA device takes this path (channels_last and "
       "cuDNN's kernel search are set for CUDA alone); benchmarks/bench_gpu.py runs it, no CPU test can."
       for i in (41, 44)},
    "gapkit.training.xǁTrainerǁ__init____mutmut_33": "Equivalent: None is falsy like the False a CPU device gives; "
    "on CUDA the layout would be lost, which no CPU test can see.",
    "gapkit.training.xǁTrainerǁbatches__mutmut_28": "Not caught (a distributed run only): the ranks shuffle with "
    "torch's global RNG instead of the seeded generator. Every rank seeds and checkpoints that RNG alike, so in the "
    "torchrun test (no augmentation) they still draw the same permutation and resume to the same run; with "
    "augmentation drawing from it on different clips, the ranks' permutations would part and their shards overlap. "
    "No test runs a distributed run with augmentation (each torchrun test costs about a minute).",
    "gapkit.training.xǁTrainerǁbatches__mutmut_36": "Not caught (a distributed run only): each rank feeds its shard "
    "in batches of the global size instead of its part of it, so an epoch takes half the optimizer steps. The "
    "torchrun test checks the gathered gaps, the GMM fits and resuming, which this leaves intact, not the number "
    "of steps an epoch takes.",
    "gapkit.training.xǁTrainerǁfit__mutmut_21": "Equivalent: the placeholder's epoch and val_acc are never read; "
    "the first epoch replaces the whole dict (during warm-up every epoch is selectable, so epoch 0 always is).",
    "gapkit.training.xǁTrainerǁfit__mutmut_91": "Equivalent: a warm-up checkpoint holds tensors, numbers, strings, "
    "lists and dicts only (no gaps yet: the first fit comes after warm-up), which torch.load's default "
    "weights_only loading accepts.",
    "gapkit.training.xǁTrainerǁfit__mutmut_151": "Equivalent: the mixture restored on resume is only read (Eq. 9's "
    "weights, the next fit's previous means for track_components) and never fitted again; its seed is read by "
    "fit() alone, and every later fit is a new mixture with the run's seed.",
    "gapkit.training.xǁTrainerǁfit__mutmut_418": "Equivalent: the condition is always true where it stands; the "
    "fits inside the loop are of steps 0 to adaptive_steps - 1, and the final fit is appended only here (a "
    "checkpoint never holds it), so a step equal to adaptive_steps is never found.",
    "gapkit.training.xǁTrainerǁ_train_epoch__mutmut_8": "Equivalent on the CPU, torch's default device for "
    "device=None; on a GPU the watch's flags would sit on the CPU beside the device's loss, which no CPU test can "
    "see (benchmarks/bench_gpu.py's runs would).",
    "gapkit.training.xǁTrainerǁ_train_epoch__mutmut_18": "Equivalent: float32 counters count the correct "
    "predictions exactly (far below 2^24), and the accuracy divides them as float32 anyway.",
    "gapkit.training.xǁTrainerǁ_train_epoch__mutmut_27": "Equivalent: the initial value of the loop index is never "
    "read (the loop assigns it before any use).",
    "gapkit.training.xǁ_NonFiniteWatchǁ__init____mutmut_11": "Equivalent: any negative sentinel means \"no "
    "non-finite loss yet\" (every reader tests batch < 0).",
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


def exit_codes(workdir: Path, module: str) -> dict | None:
    """mutmut's exit code of every mutant of one module (None: not tested yet); None before mutants exist."""
    meta = workdir / "mutants" / (MODULES[module][0] + ".meta")
    return json.loads(meta.read_text()).get("exit_code_by_key", {}) if meta.exists() else None


def draw_sample(workdir: Path, module: str, env: dict, size: int, seed: int) -> list[str]:
    """``size`` of the module's mutants drawn at random (``seed``) from all of them, written to the workdir's
    sample.json; the mutants are generated first where they do not exist yet."""
    if exit_codes(workdir, module) is None:  # mutmut generates the mutants, then finds no mutant of this name
        subprocess.run([sys.executable, "-m", "mutmut", "run", "gapkit.none"], cwd=workdir, env=env, check=False,
                       capture_output=True)
    names = sorted(exit_codes(workdir, module) or {})
    if not names:
        raise SystemExit(f"no mutants of {MODULES[module][0]} in {workdir}")
    sample = sorted(random.Random(seed).sample(names, min(size, len(names))))
    (workdir / "sample.json").write_text(json.dumps({"seed": seed, "size": len(sample), "of": len(names),
                                                     "mutants": sample}, indent=1))
    return sample


def run(workdir: Path, module: str, env: dict, children: int, names: list[str] | None = None,
        survivors: bool = False) -> None:
    """mutmut over one module's mutants (or only ``names``, those not tested yet), ``children`` at a time; with
    ``survivors``, over the mutants that survived the last run instead (after new tests)."""
    codes = exit_codes(workdir, module)
    if survivors:
        targets = [n for n, code in (codes or {}).items() if code == 0]
    elif names is None:
        targets = [MODULES[module][0][:-3].replace("/", ".") + ".*"]
    else:
        targets = [n for n in names if codes.get(n) is None]
    print(f"mutmut run {targets[0] if names is None and not survivors else f'{len(targets)} mutants'}", flush=True)
    if targets:
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *targets],
                       cwd=workdir, env=env, check=False)


def run_out_of_process(workdir: Path, module: str, env: dict) -> None:
    """The module's :data:`OUT_OF_PROCESS` tests against each survivor of the traced tests not yet put to them (but
    those explained as equivalent); each result (killed or survived) goes to the workdir's out_of_process.json."""
    tests = OUT_OF_PROCESS.get(module)
    codes = exit_codes(workdir, module)
    if not tests or codes is None:
        return
    record_file = workdir / "out_of_process.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    pending = [k for k, v in codes.items() if v == 0 and k not in record
               and not EXPLAINED.get(k, "").startswith("Equivalent")]  # no test can kill an equivalent mutant
    for key in sorted(pending):
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=workdir / "mutants", env={**env, "MUTANT_UNDER_TEST": key},
                              capture_output=True, text=True)
        record[key] = "killed" if done.returncode != 0 else "survived"
        print(f"  {key}: {record[key]} by {', '.join(tests)}", flush=True)
        record_file.write_text(json.dumps(record, indent=1, sort_keys=True))


def collect(workdir: Path, module: str, env: dict) -> dict | None:
    """Every mutant's status from mutmut's meta file of one module, and the diff of each survivor;
    None when the module has not been run."""
    path, tests = MODULES[module]
    codes = exit_codes(workdir, module)
    if codes is None:
        return None
    from mutmut.stats import status_by_exit_code

    tested = {k: v for k, v in codes.items() if v is not None}
    if not tested:
        return None
    record_file = workdir / "out_of_process.json"
    outside = json.loads(record_file.read_text()) if record_file.exists() else {}

    def status_of(key: str) -> str:
        """mutmut's status, but "killed" for a survivor of the traced tests that the out-of-process tests kill."""
        if codes.get(key) is None:
            return "untested"
        status = status_by_exit_code[codes[key]]
        return "killed" if status == "survived" and outside.get(key) == "killed" else status

    entry = {"file": path, "tests": tests, "out_of_process_tests": OUT_OF_PROCESS.get(module, []),
             "mutants": len(codes), "untested": len(codes) - len(tested), "counts": {}, "survivors": [],
             "killed_out_of_process": sorted(k for k in tested if status_of(k) != status_by_exit_code[codes[k]])}
    for key in sorted(tested):
        status = status_of(key)
        entry["counts"][status] = entry["counts"].get(status, 0) + 1
        if status in ("survived", "timeout", "no tests"):
            diff = subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=workdir, env=env,
                                  capture_output=True, text=True).stdout
            entry["survivors"].append({"mutant": key, "status": status, "diff": diff.strip(),
                                       "explanation": EXPLAINED.get(key)})
    entry["score"] = score(entry["counts"])
    sample_file = workdir / "sample.json"
    if sample_file.exists():
        sample = json.loads(sample_file.read_text())
        counts: dict[str, int] = {}
        for key in sample["mutants"]:
            status = status_of(key)
            counts[status] = counts.get(status, 0) + 1
        entry["sample"] = {"seed": sample["seed"], "size": sample["size"], "of": sample["of"], "counts": counts,
                           "score": score(counts), "interval": wilson(counts)}
    return entry


def score(counts: dict[str, int]) -> float | None:
    """killed / (killed + survived + timeout)."""
    decided = counts.get("killed", 0) + counts.get("survived", 0) + counts.get("timeout", 0)
    return round(counts.get("killed", 0) / decided, 4) if decided else None


def wilson(counts: dict[str, int], z: float = 1.959964) -> list[float] | None:
    """The 95% Wilson score interval of the killed share among the decided mutants of a random sample."""
    n = counts.get("killed", 0) + counts.get("survived", 0) + counts.get("timeout", 0)
    if not n:
        return None
    p, shrink = counts.get("killed", 0) / n, 1 + z * z / n
    centre = (p + z * z / (2 * n)) / shrink
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / shrink
    return [round(centre - half, 4), round(centre + half, 4)]


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
        tests = ", ".join([t.removeprefix("tests/") for t in e["tests"]]
                          + [f"{t.removeprefix('tests/')} (other processes)" for t in e.get("out_of_process_tests", [])])
        lines.append(f"| {e['file']} | {tests} | {sum(c.values())} of {e['mutants']} | {c.get('killed', 0)} | {c.get('survived', 0)} | "
                     f"{c.get('timeout', 0)} | {c.get('no tests', 0)} | {score} |")
    sampled = {m: e for m, e in results.items() if "sample" in e}
    if sampled:
        lines += ["", "Random samples (each drawn from all of the module's mutants, so its score estimates the "
                  "module's; 95% Wilson interval):", "",
                  "| module | sample (of all) | seed | killed | survived | timeout | untested | score | 95% interval |",
                  "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :--- |"]
        for m, e in sampled.items():
            smp, c = e["sample"], e["sample"]["counts"]
            est = "" if smp["score"] is None else f"{100 * smp['score']:.1f}%"
            ci = "" if smp["interval"] is None else f"{100 * smp['interval'][0]:.1f}-{100 * smp['interval'][1]:.1f}%"
            lines.append(f"| {e['file']} | {smp['size']} of {smp['of']} | {smp['seed']} | {c.get('killed', 0)} | "
                         f"{c.get('survived', 0)} | {c.get('timeout', 0)} | {c.get('untested', 0)} | {est} | {ci} |")
    for m, e in results.items():
        if e.get("killed_out_of_process"):
            lines += ["", f"Mutants of {e['file']} that the traced tests miss and the tests in other processes kill "
                      f"(counted as killed): " + ", ".join(e["killed_out_of_process"]) + "."]
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
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="test a random sample of N of each module's mutants instead of all (0: all)")
    parser.add_argument("--sample-seed", type=int, default=0, help="the seed of --sample's draw")
    parser.add_argument("--survivors", action="store_true",
                        help="test again only the mutants that survived the last run (after new tests)")
    args = parser.parse_args()
    ensure_mutmut()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    previous = args.out / "mutation.json"
    seconds = json.loads(previous.read_text()).get("seconds") if previous.exists() else None
    seconds = seconds if isinstance(seconds, dict) else {}  # a module's time stays until it runs again
    if not args.report_only:
        for m in args.modules:
            prepare(args.workdir / m, m)
            names = draw_sample(args.workdir / m, m, env, args.sample, args.sample_seed) if args.sample else None
            t0 = time.perf_counter()
            run(args.workdir / m, m, env, args.children, names, args.survivors)
            run_out_of_process(args.workdir / m, m, env)
            seconds[m] = round(time.perf_counter() - t0)
            print(f"  {m}: {seconds[m]} s", flush=True)
    results = {m: e for m in MODULES if (e := collect(args.workdir / m, m, env)) is not None}
    write(results, args.out, {m: s for m, s in seconds.items() if m in results})
    for m, e in results.items():
        print(f"{e['file']}: {e['counts']} score {e['score']}" + (f"; sample {e['sample']['counts']} score "
              f"{e['sample']['score']} {e['sample']['interval']}" if "sample" in e else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
