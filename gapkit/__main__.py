"""Command line: ``python -m gapkit train | prepare | verify | paths``.

    python -m gapkit train --dataset synthetic --method adaptive --profile default --seed 0 --json
    python -m gapkit train --method adaptive --option gamma=0 --set warmup_epochs=3
    torchrun --nproc_per_node=2 -m gapkit train --method adaptive --profile paper  # one run, two processes (GPUs)
    python -m gapkit prepare --dataset crema-d --data-root PATH --profile paper
    python -m gapkit verify --data-root PATH
    python -m gapkit paths --profile default --dataset crema-d

Every setting (profile, --set, --method, --option, --seed, --init-from) is checked before
any data is read; a bad one stops with exit code 2 and one line naming it and what it accepts.
Under --on-error skip, the number of clips left out and where their list is go to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .paths import DATASETS
from .profiles import PROFILES


def _option(text: str) -> tuple[str, object]:
    from .profiles import parse_override

    try:
        return parse_override(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _profile(args):
    from .profiles import get_profile, parse_override

    profile = get_profile(args.profile)
    overrides = dict(parse_override(s, profile) for s in args.set)
    if getattr(args, "device", None):
        overrides["device"] = args.device
    if getattr(args, "threads", None) is not None:
        overrides["threads"] = args.threads
    return profile.replace(**overrides)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=DATASETS[0], choices=DATASETS)
    p.add_argument("--data-root", default=None, help="corpus folder (or manifest CSV); default for synthetic: generated")
    p.add_argument("--profile", default="default", choices=tuple(PROFILES))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one profile setting")
    p.add_argument("--on-error", default="raise", choices=("raise", "skip"), help="bad clips: stop, or skip and count")


def _skipped(data, command: str) -> str | None:
    """One line on stderr when clips were skipped: how many, and the file that lists them; the line, else None."""
    count = data.info.get("skipped_count", 0)
    if not count:
        return None
    total = count + sum(data.info.get("split_sizes", {}).values())
    line = (f"{count} of {total} clips skipped as unreadable (--on-error skip); the list (clip, file, reason) is "
            f"under 'skipped' in {Path(data.info['cache_path']) / 'manifest.json'}")
    print(f"gapkit {command}: warning: {line}", file=sys.stderr)
    return line


def cmd_train(args) -> int:
    from . import distributed

    group = distributed.init_from_env(_profile(args).device)  # under torchrun: one run on several processes
    try:
        return _train(args, group)
    finally:
        distributed.shutdown()


def _train(args, group) -> int:
    from . import distributed
    from .runs import load_data, train_run
    from .io import RunFolderBusy
    from .training import NonFiniteLossError

    profile = _profile(args)  # every profile setting, --set included, is checked here
    seed = profile.seeds[0] if args.seed is None else args.seed
    if seed < 0:
        raise ValueError(f"--seed {seed}: expected an integer >= 0")
    options = {**profile.peer_options.get(args.method, {}), **dict(args.option)}
    profile.train_config(args.method, seed, **options)  # the method and its options, before any data is read
    distributed.check_method(args.method, group)
    main = group is None or group.is_main
    if args.init_from is not None and not Path(args.init_from).is_file():
        raise FileNotFoundError(f"--init-from {args.init_from}: no such file (a run's warmup.pt)")
    with distributed.main_first(group):  # rank 0 builds a missing cache, the others read it after
        data = load_data(profile, args.dataset, args.data_root, on_error=args.on_error,
                         progress=main and not args.quiet)
    skipped = _skipped(data, "train") if main else None
    try:
        m = train_run(profile, data, args.method, seed, out_dir=args.out, init_from=args.init_from,
                      progress=main and not args.quiet, dataset=args.dataset, force=args.force, **options)
    except (RunFolderBusy, NonFiniteLossError) as exc:
        print(f"gapkit train: error: {exc}", file=sys.stderr)
        return 1
    if not main:
        return 0
    if args.json:
        json.dump(m, sys.stdout, default=str)
        sys.stdout.write("\n")
    else:
        print(f"{args.method} seed {m['seed']} on {args.dataset} ({profile.name} profile), {m['seconds']:.1f} s")
        print(f"  test accuracy at the best-validation epoch ({m['best_val_epoch']}): fused {m['test_acc']:.4f}, "
              f"audio {m['test_acc_audio']:.4f}, visual {m['test_acc_visual']:.4f}")
        print(f"  test accuracy at the last epoch: fused {m['last_test_acc']:.4f}, "
              f"audio {m['last_test_acc_audio']:.4f}, visual {m['last_test_acc_visual']:.4f}")
        for g in m["gmm"]:
            print(f"  GMM {g['label']}: weights {g['weights'][0]:.3f}/{g['weights'][1]:.3f}, "
                  f"means {g['means'][0]:+.4f}/{g['means'][1]:+.4f}, density at 0 {g['density_at_0']:.2f}")
        if skipped:
            print(f"  {skipped}")
    return 0


def cmd_env(args) -> int:
    from .runs import environment

    for key, value in environment(args.device).items():
        if isinstance(value, dict):
            for sub, item in value.items():
                print(f"{key}.{sub}: {item}")
        else:
            print(f"{key}: {value}")
    return 0


def cmd_prepare(args) -> int:
    from .runs import load_data

    if args.download_splits:
        from .data.cremad import download_splits

        for path in download_splits(args.data_root):
            print(f"downloaded and verified {path}")
    data = load_data(_profile(args), args.dataset, args.data_root, on_error=args.on_error, progress=True)
    skipped = _skipped(data, "prepare")
    sizes = {name: len(split) for name, split in data.splits().items()}
    print(f"{args.dataset}: {sizes}, classes {data.classes}, cache {data.info.get('cache_path')}")
    if skipped:
        print(skipped)
        for s in data.info["skipped"][:5]:
            print(f"  {s['clip']}: {s['file']}: {s['reason']}")
        if len(data.info["skipped"]) > 5:
            print(f"  ... and {len(data.info['skipped']) - 5} more")
    return 0


def cmd_verify(args) -> int:
    from .data.cremad import verify

    report = verify(args.data_root, args.checksums)
    print(report.summary())
    return 0 if report.ok else 1


def cmd_paths(args) -> int:
    from .paths import outputs

    where = {"profile": args.profile, "dataset": args.dataset, **outputs(args.profile, args.dataset)}
    lines = DATASETS if args.datasets else [f"{k}={v}" for k, v in where.items()]
    print(*lines, sep="\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gapkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one run and print its metrics")
    _common(t)
    t.add_argument("--method", default="adaptive")
    t.add_argument("--option", action="append", default=[], type=_option, metavar="NAME=VALUE",
                   help="a method option, e.g. gamma=0 or use_weights=false")
    t.add_argument("--seed", type=int, default=None, help="default: the profile's first seed")
    t.add_argument("--out", default=None, help="run folder (default: results/<profile>/<dataset>/runs/<name>)")
    t.add_argument("--init-from", default=None, help="warm-up checkpoint to branch from")
    t.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))
    t.add_argument("--threads", type=int, default=None,
                   help="torch's CPU threads (default: the profile's; part of the run's settings)")
    t.add_argument("--force", action="store_true",
                   help="train again when the run folder holds a finished run that differs from this one")
    t.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    p = sub.add_parser("prepare", help="decode a corpus once into the cache")
    _common(p)
    p.add_argument("--download-splits", action="store_true", help="CREMA-D: fetch the standard split files (checksum-pinned)")
    p.set_defaults(func=cmd_prepare)

    v = sub.add_parser("verify", help="check a CREMA-D copy against per-file sha256 and size")
    v.add_argument("--data-root", required=True)
    v.add_argument("--checksums", default=None, help="path,sha256,bytes CSV (default: the list shipped with gapkit)")
    v.set_defaults(func=cmd_verify)

    e = sub.add_parser("env", help="what a bug report needs: versions, commit, device, threads, locations")
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    e.set_defaults(func=cmd_env)

    o = sub.add_parser("paths", help="where a profile's outputs go, as key=value lines (run_all.sh reads them)")
    o.add_argument("--profile", default="default", choices=tuple(PROFILES))
    o.add_argument("--dataset", default=DATASETS[0], choices=DATASETS)
    o.add_argument("--datasets", action="store_true", help="print the dataset names instead, one a line")
    o.set_defaults(func=cmd_paths)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"gapkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
